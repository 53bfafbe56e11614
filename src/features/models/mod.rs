//! Backbone architectures on candle tensors. Each reads its widths and depths off the
//! checkpoint and names the tensors it expects when one is missing.

pub mod layers;
pub mod mobilenet;
pub mod resnet;
pub mod vit;
