//! The network walk: record the forward pass ([`Tracer`]), then send relevance backwards
//! through it layer by layer ([`Explainer`]).

pub(crate) mod explain;
mod trace;

pub use crate::graph::Node;
pub use explain::{AttributionMethod, Conservation, Explain, Explainer, Explanation, LayerRelevance, Target};
pub use trace::Tracer;
