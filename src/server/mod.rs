//! The authorization server (feature `server`). So far: [`TokenLifetime`] and client secrets
//! ([`ClientSecret`], [`SecretHash`]); the endpoints, grants and stores are still to come.

mod lifetime;
mod secret;

pub use lifetime::{LifetimeError, TokenLifetime};
pub use secret::{ClientSecret, SecretError, SecretHash};
