//! redis-ratelimit tour (written with the crate).

use crate::Tour;

pub(crate) async fn run(_tour: Tour) -> anyhow::Result<()> {
    println!("   (redis-ratelimit: coming with the crate)");
    Ok(())
}
