//! The Redis backplane, selected with `--backplane redis://...`.

use std::sync::Arc;

use rt_core::Backplane;

use crate::config::Config;
use crate::error::Error;

pub(crate) async fn build(_config: &Config) -> Result<Arc<dyn Backplane>, Error> {
    Err(Error::Backplane(
        "the Redis backplane is not implemented yet".into(),
    ))
}
