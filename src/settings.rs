//! Enumerated settings as types: each parses from the one spelling the flags, the environment
//! and the docs use, refuses anything else with one message that lists the choices, and
//! prints back as it parsed. A leaf: the command line (`config`) parses into these, the
//! layers below take them, and none of them knows about clap.

use std::fmt;
use std::str::FromStr;

/// Where a model or an exact search runs: `cpu`, `cuda` (device 0) or `cuda:N`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Device {
    /// The host's cores.
    #[default]
    Cpu,
    /// CUDA device N (needs a dcd built with `--features cuda`).
    Cuda(usize),
}

impl FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Device, String> {
        let cuda = match s.strip_prefix("cuda") {
            Some("") => Some(0),
            Some(rest) => rest.strip_prefix(':').and_then(|n| n.parse().ok()),
            None if s == "cpu" => return Ok(Device::Cpu),
            None => None,
        };
        cuda.map(Device::Cuda)
            .ok_or_else(|| format!("{s:?} is not a device: use cpu, cuda or cuda:N"))
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// The precision a backbone computes in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// binary32.
    #[default]
    F32,
    /// binary16 (for CUDA).
    F16,
    /// bfloat16 (for CUDA).
    Bf16,
}

/// The element type of a GPU's copy of an f32 pool for exact search.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ExactCopy {
    /// The pool's own element type.
    #[default]
    Stored,
    /// binary16: candidates from the copy, scored and certified from the f32 rows.
    F16,
    /// bfloat16, as `F16`.
    Bf16,
}

/// What a ViT's feature vector is made of (ResNets and MobileNets have one choice).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Pooling {
    /// The CLS token after the final norm.
    #[default]
    Cls,
    /// CLS followed by the mean of the patch tokens (twice as wide).
    ClsMeanPatch,
}

/// `FromStr` and `Display` for an enum of unit variants, from one table of spellings.
macro_rules! spelled {
    ($ty:ident, $what:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value's spelling, in order.
            pub const NAMES: &'static [&'static str] = &[$($name),+];

            /// The value's spelling.
            pub fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<$ty, String> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    other => Err(format!(
                        "{other:?} is not {}: use {}",
                        $what,
                        $ty::NAMES.join(", ")
                    )),
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

spelled!(Precision, "a precision", { F32 => "f32", F16 => "f16", Bf16 => "bf16" });
spelled!(ExactCopy, "a copy type", { Stored => "stored", F16 => "f16", Bf16 => "bf16" });
spelled!(Pooling, "a pooling", { Cls => "cls", ClsMeanPatch => "cls-mean-patch" });

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_and_print_back() {
        for (text, device) in [
            ("cpu", Device::Cpu),
            ("cuda", Device::Cuda(0)),
            ("cuda:3", Device::Cuda(3)),
        ] {
            assert_eq!(text.parse::<Device>(), Ok(device));
        }
        assert_eq!(Device::Cuda(0).to_string(), "cuda:0");
        for bad in ["", "gpu", "cuda:", "cuda:x", "cuda3", "CPU"] {
            let e = bad.parse::<Device>().unwrap_err();
            assert!(e.contains("use cpu, cuda or cuda:N"), "{e}");
        }
    }

    #[test]
    fn spelled_settings_round_trip_and_refuse_the_rest() {
        for name in Precision::NAMES {
            assert_eq!(name.parse::<Precision>().unwrap().to_string(), *name);
        }
        for name in ExactCopy::NAMES {
            assert_eq!(name.parse::<ExactCopy>().unwrap().to_string(), *name);
        }
        for name in Pooling::NAMES {
            assert_eq!(name.parse::<Pooling>().unwrap().to_string(), *name);
        }
        // Before, an unknown precision or pooling fell back to f32 / cls without a word.
        assert_eq!(
            "fp16".parse::<Precision>().unwrap_err(),
            "\"fp16\" is not a precision: use f32, f16, bf16"
        );
        assert!("mean"
            .parse::<Pooling>()
            .unwrap_err()
            .contains("cls, cls-mean-patch"));
    }
}
