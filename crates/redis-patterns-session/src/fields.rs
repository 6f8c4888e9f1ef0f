//! A session's data as its top-level fields, each encoded with the store's codec.
//!
//! With the JSON codec, a struct or a map with string keys (the shapes sessions hold) is
//! serialized straight into its fields: each field's value goes to the codec as it is, with no
//! JSON value built first, and comes out as the same JSON. Any other shape, and any other codec,
//! takes the general path through a `serde_json::Value`, which also gives the errors for data
//! that is not a map. (Another codec could encode a value differently from the JSON value it
//! maps to, bytes as MessagePack `bin` say, which [`Session::deserialize`] reads back through
//! JSON values.)
//!
//! [`Session::deserialize`]: crate::Session::deserialize

use std::{any::TypeId, fmt};

use redis_core::{Codec, codec::Json};
use serde::{
    Serialize,
    ser::{self, Impossible},
};

use crate::{
    error::{Error, Result},
    session::check_field,
};

/// The fields of `data` (a struct or map), each encoded with `codec`, sorted by name.
///
/// # Errors
/// [`Error::NotAMap`] when `data` is not a struct or map, [`Error::InvalidField`] for a reserved
/// name, [`Error::Core`] for codec failures.
pub(crate) fn encode_fields<C: Codec, T: Serialize + ?Sized>(
    codec: &C,
    data: &T,
) -> Result<Vec<(String, Vec<u8>)>> {
    if TypeId::of::<C>() != TypeId::of::<Json>() {
        return through_json(codec, data);
    }
    let direct = Fields {
        codec,
        fields: Vec::new(),
        name: None,
    };
    let mut fields = match data.serialize(direct) {
        Ok(fields) => fields,
        Err(Stop::Failed(e)) => return Err(e),
        Err(Stop::OtherShape) => through_json(codec, data)?,
    };
    // Stored in name order, which a load then takes as it is. Stable: of a name given twice, the
    // last still counts.
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(fields)
}

/// The general path: `data` as a JSON value, whose object's members are the fields.
fn through_json<C: Codec, T: Serialize + ?Sized>(
    codec: &C,
    data: &T,
) -> Result<Vec<(String, Vec<u8>)>> {
    let value = serde_json::to_value(data).map_err(|e| redis_core::Error::Encode(Box::new(e)))?;
    let map = match value {
        serde_json::Value::Object(map) => map,
        serde_json::Value::Null => return Ok(Vec::new()),
        serde_json::Value::Bool(_) => return Err(Error::NotAMap("a boolean")),
        serde_json::Value::Number(_) => return Err(Error::NotAMap("a number")),
        serde_json::Value::String(_) => return Err(Error::NotAMap("a string")),
        serde_json::Value::Array(_) => return Err(Error::NotAMap("a sequence")),
    };
    map.into_iter()
        .map(|(name, value)| {
            check_field(&name)?;
            Ok((name, codec.encode(&value)?))
        })
        .collect()
}

/// Why the direct path stopped.
#[derive(Debug)]
enum Stop {
    /// A field was refused or did not encode: the call's error.
    Failed(Error),
    /// Not a struct or a map with string keys: the general path decides.
    OtherShape,
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed(e) => e.fmt(f),
            Self::OtherShape => f.write_str("not a struct or a map with string keys"),
        }
    }
}

impl std::error::Error for Stop {}

impl ser::Error for Stop {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self::Failed(redis_core::Error::Encode(msg.to_string().into()).into())
    }
}

/// Serializes the top level of the data into its encoded fields.
struct Fields<'c, C> {
    codec: &'c C,
    fields: Vec<(String, Vec<u8>)>,
    /// A map's key, waiting for its value.
    name: Option<String>,
}

impl<C: Codec> Fields<'_, C> {
    fn push<T: Serialize + ?Sized>(&mut self, name: String, value: &T) -> Result<(), Stop> {
        check_field(&name).map_err(Stop::Failed)?;
        let bytes = self
            .codec
            .encode(value)
            .map_err(|e| Stop::Failed(e.into()))?;
        self.fields.push((name, bytes));
        Ok(())
    }
}

/// Serializer methods of shapes the direct path leaves to the general one; those after `@generic`
/// also take the value of the shape (a generic `&T`).
macro_rules! other_shape {
    ($($method:ident($($arg:ty),*) -> $ok:ty;)* $(@generic $($generic:ident($($garg:ty),*) -> $gok:ty;)*)?) => {
        $(
            fn $method(self, $(_: $arg),*) -> Result<$ok, Stop> {
                Err(Stop::OtherShape)
            }
        )*
        $($(
            fn $generic<T: Serialize + ?Sized>(self, $(_: $garg,)* _: &T) -> Result<$gok, Stop> {
                Err(Stop::OtherShape)
            }
        )*)?
    };
}

impl<'c, C: Codec> ser::Serializer for Fields<'c, C> {
    type Ok = Vec<(String, Vec<u8>)>;
    type Error = Stop;
    type SerializeSeq = Impossible<Self::Ok, Stop>;
    type SerializeTuple = Impossible<Self::Ok, Stop>;
    type SerializeTupleStruct = Impossible<Self::Ok, Stop>;
    type SerializeTupleVariant = Impossible<Self::Ok, Stop>;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<Self::Ok, Stop>;

    other_shape! {
        serialize_bool(bool) -> Self::Ok;
        serialize_i8(i8) -> Self::Ok;
        serialize_i16(i16) -> Self::Ok;
        serialize_i32(i32) -> Self::Ok;
        serialize_i64(i64) -> Self::Ok;
        serialize_u8(u8) -> Self::Ok;
        serialize_u16(u16) -> Self::Ok;
        serialize_u32(u32) -> Self::Ok;
        serialize_u64(u64) -> Self::Ok;
        serialize_f32(f32) -> Self::Ok;
        serialize_f64(f64) -> Self::Ok;
        serialize_char(char) -> Self::Ok;
        serialize_str(&str) -> Self::Ok;
        serialize_bytes(&[u8]) -> Self::Ok;
        serialize_none() -> Self::Ok;
        serialize_unit() -> Self::Ok;
        serialize_unit_struct(&'static str) -> Self::Ok;
        serialize_unit_variant(&'static str, u32, &'static str) -> Self::Ok;
        serialize_seq(Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(usize) -> Self::SerializeTuple;
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct;
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant;
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant;
        @generic
        serialize_newtype_variant(&'static str, u32, &'static str) -> Self::Ok;
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Self::Ok, Stop> {
        value.serialize(self)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Self::Ok, Stop> {
        value.serialize(self)
    }

    fn serialize_map(mut self, len: Option<usize>) -> Result<Self, Stop> {
        self.fields.reserve(len.unwrap_or(0).min(1024));
        Ok(self)
    }

    fn serialize_struct(mut self, _: &'static str, len: usize) -> Result<Self, Stop> {
        self.fields.reserve(len.min(1024));
        Ok(self)
    }
}

impl<C: Codec> ser::SerializeStruct for Fields<'_, C> {
    type Ok = Vec<(String, Vec<u8>)>;
    type Error = Stop;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        value: &T,
    ) -> Result<(), Stop> {
        self.push(name.to_owned(), value)
    }

    fn end(self) -> Result<Self::Ok, Stop> {
        Ok(self.fields)
    }
}

impl<C: Codec> ser::SerializeMap for Fields<'_, C> {
    type Ok = Vec<(String, Vec<u8>)>;
    type Error = Stop;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Stop> {
        self.name = Some(key.serialize(Name)?);
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Stop> {
        // serde calls `serialize_key` first; a map that does not is left to the general path.
        let name = self.name.take().ok_or(Stop::OtherShape)?;
        self.push(name, value)
    }

    fn end(self) -> Result<Self::Ok, Stop> {
        Ok(self.fields)
    }
}

/// A map key that is text; any other key is left to the general path.
struct Name;

impl ser::Serializer for Name {
    type Ok = String;
    type Error = Stop;
    type SerializeSeq = Impossible<String, Stop>;
    type SerializeTuple = Impossible<String, Stop>;
    type SerializeTupleStruct = Impossible<String, Stop>;
    type SerializeTupleVariant = Impossible<String, Stop>;
    type SerializeMap = Impossible<String, Stop>;
    type SerializeStruct = Impossible<String, Stop>;
    type SerializeStructVariant = Impossible<String, Stop>;

    fn serialize_str(self, v: &str) -> Result<String, Stop> {
        Ok(v.to_owned())
    }

    other_shape! {
        serialize_bool(bool) -> String;
        serialize_i8(i8) -> String;
        serialize_i16(i16) -> String;
        serialize_i32(i32) -> String;
        serialize_i64(i64) -> String;
        serialize_u8(u8) -> String;
        serialize_u16(u16) -> String;
        serialize_u32(u32) -> String;
        serialize_u64(u64) -> String;
        serialize_f32(f32) -> String;
        serialize_f64(f64) -> String;
        serialize_char(char) -> String;
        serialize_bytes(&[u8]) -> String;
        serialize_none() -> String;
        serialize_unit() -> String;
        serialize_unit_struct(&'static str) -> String;
        serialize_unit_variant(&'static str, u32, &'static str) -> String;
        serialize_seq(Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(usize) -> Self::SerializeTuple;
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct;
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant;
        serialize_map(Option<usize>) -> Self::SerializeMap;
        serialize_struct(&'static str, usize) -> Self::SerializeStruct;
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant;
        @generic
        serialize_some() -> String;
        serialize_newtype_variant(&'static str, u32, &'static str) -> String;
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<String, Stop> {
        value.serialize(self)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use serde::Serialize;

    use super::*;

    #[derive(Serialize)]
    struct Cart {
        user_name: &'static str,
        items: Vec<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        coupon: Option<String>,
        nested: BTreeMap<&'static str, f64>,
    }

    fn sorted(mut fields: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
        fields.sort();
        fields
    }

    #[test]
    fn structs_and_maps_encode_as_through_a_json_value() {
        let cart = Cart {
            user_name: "alice",
            items: vec![1, 2, 3],
            coupon: None,
            nested: [("a", 1.5), ("b", -2.0)].into_iter().collect(),
        };
        let direct = encode_fields(&Json, &cart).unwrap();
        let names: Vec<&str> = direct.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["items", "nested", "user_name"], "in name order");
        assert_eq!(direct, sorted(through_json(&Json, &cart).unwrap()));

        let map: HashMap<String, serde_json::Value> = [
            ("theme".to_owned(), serde_json::json!("dark")),
            ("n".to_owned(), serde_json::json!(7)),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            encode_fields(&Json, &map).unwrap(),
            sorted(through_json(&Json, &map).unwrap())
        );
        assert_eq!(
            encode_fields(&Json, &Some(&map)).unwrap(),
            sorted(through_json(&Json, &map).unwrap())
        );
    }

    #[cfg(feature = "msgpack")]
    #[test]
    fn other_codecs_take_the_general_path() {
        #[derive(Serialize)]
        struct Small {
            ratio: f32,
            name: &'static str,
        }
        let codec = redis_core::codec::MsgPack;
        let data = Small {
            ratio: 0.5,
            name: "x",
        };
        // Exactly the general path's bytes (the f32 goes through a JSON number, an f64).
        assert_eq!(
            encode_fields(&codec, &data).unwrap(),
            through_json(&codec, &data).unwrap()
        );
    }

    #[test]
    fn other_shapes_keep_the_general_paths_answers() {
        assert!(encode_fields(&Json, &()).unwrap().is_empty());
        assert!(encode_fields(&Json, &None::<Cart>).unwrap().is_empty());
        for (result, what) in [
            (encode_fields(&Json, &true), "a boolean"),
            (encode_fields(&Json, &7), "a number"),
            (encode_fields(&Json, "text"), "a string"),
            (encode_fields(&Json, &[1, 2]), "a sequence"),
        ] {
            assert!(
                matches!(result, Err(Error::NotAMap(w)) if w == what),
                "{what}"
            );
        }
        // Integer keys: JSON writes them as text, so the general path takes the map.
        let numbered: BTreeMap<u32, &str> = [(1, "one"), (2, "two")].into_iter().collect();
        let fields = encode_fields(&Json, &numbered).unwrap();
        assert_eq!(fields, through_json(&Json, &numbered).unwrap());
        assert_eq!(fields[0].0, "1");
    }

    #[test]
    fn reserved_and_empty_names_are_refused() {
        let reserved: BTreeMap<&str, u8> = [("__created", 1)].into_iter().collect();
        assert!(matches!(
            encode_fields(&Json, &reserved),
            Err(Error::InvalidField(name)) if name == "__created"
        ));
        let empty: BTreeMap<&str, u8> = [("", 1)].into_iter().collect();
        assert!(matches!(
            encode_fields(&Json, &empty),
            Err(Error::InvalidField(_))
        ));
    }
}
