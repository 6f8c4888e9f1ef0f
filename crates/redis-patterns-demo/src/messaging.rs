//! redis-messaging tour (written with the crate).

use crate::Tour;

pub(crate) async fn run(_tour: Tour) -> anyhow::Result<()> {
    println!("   (redis-messaging: coming with the crate)");
    Ok(())
}
