//! `saeplug explain`: auto-interp. Explanations of features from a language model
//! shown delphi-style examples, scored by detection and fuzzing (balanced accuracy
//! on held-out activating and non-activating examples).

pub mod model;
pub mod prompt;
pub mod score;
