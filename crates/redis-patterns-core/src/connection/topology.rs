//! Topology knowledge: which masters a cluster has right now, and how to reach one of them with
//! the credentials, database and TLS settings of a seed node.

use std::{fmt, time::Duration};

use redis::{ConnectionAddr, ConnectionInfo, aio::ConnectionLike};

use super::Endpoint;
use crate::error::{Error, Result};

/// The address of one cluster node as `CLUSTER NODES` lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeAddr {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl NodeAddr {
    /// `template` pointed at this node: same transport (TLS settings kept), credentials and
    /// database.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for a template that is not a TCP address (a Unix socket).
    pub fn connection_info(&self, template: &ConnectionInfo) -> Result<ConnectionInfo> {
        let (host, port) = (self.host.clone(), self.port);
        let addr = match template.addr() {
            ConnectionAddr::Tcp(..) => ConnectionAddr::Tcp(host, port),
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host,
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => {
                return Err(Error::Unsupported(
                    "cluster nodes reached through a non-TCP address",
                ));
            }
        };
        Ok(template.clone().set_addr(addr))
    }
}

/// The healthy masters in a `CLUSTER NODES` reply, sorted and without duplicates. Masters flagged
/// `fail`, `noaddr` or `handshake` are left out.
///
/// ```
/// let text = "a1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-16383\n\
///             b2 127.0.0.1:30002@40002 slave a1 0 0 1 connected";
/// let masters = redis_core::parse_cluster_masters(text);
/// assert_eq!(masters.len(), 1);
/// assert_eq!(masters[0].to_string(), "127.0.0.1:30001");
/// ```
pub fn parse_cluster_masters(nodes: &str) -> Vec<NodeAddr> {
    let mut masters: Vec<NodeAddr> = nodes.lines().filter_map(parse_master).collect();
    masters.sort();
    masters.dedup();
    masters
}

/// A healthy master in one `CLUSTER NODES` line (`<id> <ip:port@cport[,hostname]> <flags> ...`).
fn parse_master(line: &str) -> Option<NodeAddr> {
    let mut fields = line.split(' ');
    let addr = fields.nth(1)?;
    let flags = fields.next()?;
    let flags: Vec<&str> = flags.split(',').collect();
    if !flags.contains(&"master")
        || flags
            .iter()
            .any(|f| matches!(*f, "fail" | "noaddr" | "handshake"))
    {
        return None;
    }
    let addr = addr.split(['@', ',']).next()?;
    let (host, port) = addr.rsplit_once(':')?;
    if host.is_empty() {
        return None;
    }
    Some(NodeAddr {
        host: host.to_owned(),
        port: port.parse().ok()?,
    })
}

/// Asks one node of a cluster, over `conn`, for the cluster's healthy masters (sorted).
///
/// # Errors
/// The command's failure, or [`Error::Unsupported`] when the reply lists no healthy master.
pub async fn cluster_masters<C: ConnectionLike + Send>(conn: &mut C) -> Result<Vec<NodeAddr>> {
    let text: String = redis::cmd("CLUSTER").arg("NODES").query_async(conn).await?;
    let masters = parse_cluster_masters(&text);
    if masters.is_empty() {
        return Err(Error::Unsupported("a cluster without healthy masters"));
    }
    Ok(masters)
}

impl Endpoint {
    /// The connection settings of every master behind this endpoint: the server (or the current
    /// master behind Sentinel) for [`Endpoint::Single`]; for [`Endpoint::Cluster`], the healthy
    /// masters from `CLUSTER NODES`, asked of each seed node in turn (`timeout` bounds each
    /// connection and reply), with the seed's credentials, database and TLS settings.
    ///
    /// # Errors
    /// The last seed's failure when no seed answers.
    pub async fn masters(&self, timeout: Duration) -> Result<Vec<(NodeAddr, ConnectionInfo)>> {
        match self {
            Self::Single(client) => {
                let info = client.get_connection_info().clone();
                let addr = match info.addr() {
                    ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                        NodeAddr {
                            host: host.clone(),
                            port: *port,
                        }
                    }
                    other => NodeAddr {
                        host: other.to_string(),
                        port: 0,
                    },
                };
                Ok(vec![(addr, info)])
            }
            Self::Cluster { nodes, .. } => {
                let mut last = Error::Unsupported("a cluster endpoint without seed nodes");
                for seed in nodes {
                    match masters_via(seed, timeout).await {
                        Ok(masters) => {
                            return masters
                                .into_iter()
                                .map(|addr| {
                                    let info = addr.connection_info(seed)?;
                                    Ok((addr, info))
                                })
                                .collect();
                        }
                        Err(e) => last = e,
                    }
                }
                Err(last)
            }
        }
    }
}

/// The masters of the cluster `seed` belongs to, asked over a short-lived connection to `seed`.
async fn masters_via(seed: &ConnectionInfo, timeout: Duration) -> Result<Vec<NodeAddr>> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let mut conn = redis::Client::open(seed.clone())?
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    cluster_masters(&mut conn).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_lines_yield_healthy_masters() {
        let text = "\
a1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:30002@40002,node-b master - 0 0 2 connected 5461-10922
c3 127.0.0.1:30003@40003 master,fail - 0 0 3 connected 10923-16383
d4 127.0.0.1:30004@40004 slave a1 0 0 1 connected
e5 :0@0 master,noaddr - 0 0 0 disconnected
f6 ::1:30006@40006 master - 0 0 6 connected
a1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460";
        let masters: Vec<String> = parse_cluster_masters(text)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(masters, ["127.0.0.1:30001", "127.0.0.1:30002", "::1:30006"]);
    }

    #[test]
    fn a_node_keeps_the_template_settings() {
        let template: ConnectionInfo = "redis://user:secret@127.0.0.1:7000/0".parse().unwrap();
        let node = NodeAddr {
            host: "127.0.0.1".into(),
            port: 7001,
        };
        let info = node.connection_info(&template).unwrap();
        assert_eq!(info.addr(), &ConnectionAddr::Tcp("127.0.0.1".into(), 7001));
        assert_eq!(info.redis_settings().username(), Some("user"));
        assert_eq!(info.redis_settings().password(), Some("secret"));
    }
}
