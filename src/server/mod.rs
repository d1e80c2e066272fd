//! The authorization server (feature `server`). So far: [`TokenLifetime`]; the endpoints, grants
//! and stores are still to come.

mod lifetime;

pub use lifetime::{LifetimeError, TokenLifetime};
