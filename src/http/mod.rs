//! The HTTP face of the resource server: the tower layer ([`layer`]), the scope requirement
//! ([`require_scope`]), how rejections are answered (RFC 6750 §3, [`rejection`]), the audit
//! events ([`audit`]) and the protected-resource metadata router ([`resource_metadata`]).

pub(crate) mod audit;
#[cfg(feature = "axum")]
pub(crate) mod form_body;
pub(crate) mod layer;
pub(crate) mod rejection;
pub(crate) mod require_scope;
#[cfg(feature = "axum")]
pub(crate) mod resource_metadata;
