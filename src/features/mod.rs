//! Backbone features (issue 3). So far: image decoding and preprocessing, the part every
//! backbone shares. Backbones, the worker pool and `dcd embed` come next.

pub mod preprocess;
