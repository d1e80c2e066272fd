//! The HTTP face of the resource server: the tower layer ([`layer`]), the scope requirement
//! ([`require_scope`]), how rejections are answered (RFC 6750 §3, [`rejection`]) and the audit
//! events ([`audit`]).

pub(crate) mod audit;
pub(crate) mod layer;
pub(crate) mod rejection;
pub(crate) mod require_scope;
