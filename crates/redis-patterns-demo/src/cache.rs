//! redis-cache tour (written with the crate).

use crate::Tour;

pub(crate) async fn run(_tour: Tour) -> anyhow::Result<()> {
    println!("   (redis-cache: coming with the crate)");
    Ok(())
}
