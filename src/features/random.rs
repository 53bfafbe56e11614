//! Random weights in a registry entry's canonical shapes and tensor names, for benchmarks and
//! tests that need the real architecture but not its training. Convolutions and linear layers
//! are drawn N(0, 1/fan_in) so activations stay in range through deep stacks.

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};

use super::error::{FeatureError, FeatureResult};
use super::models::vit::VitFamily;
use super::registry::{Arch, BackboneSpec};

struct Builder {
    rng: rand::rngs::StdRng,
    tensors: Vec<(String, Tensor)>,
}

impl Builder {
    fn normal(&mut self, name: String, shape: &[usize], std: f32) -> FeatureResult<()> {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| {
                // Box-Muller: one standard normal per draw is plenty here.
                let u1: f32 = self.rng.gen_range(f32::EPSILON..1.0);
                let u2: f32 = self.rng.gen();
                std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
            })
            .collect();
        self.tensors
            .push((name, Tensor::from_vec(data, shape, &Device::Cpu)?));
        Ok(())
    }

    fn fill(&mut self, name: String, shape: &[usize], v: f32) -> FeatureResult<()> {
        self.tensors
            .push((name, Tensor::full(v, shape, &Device::Cpu)?));
        Ok(())
    }

    fn conv_bn(
        &mut self,
        conv: &str,
        bn: &str,
        out: usize,
        inp: usize,
        k: usize,
    ) -> FeatureResult<()> {
        self.normal(
            format!("{conv}.weight"),
            &[out, inp, k, k],
            (1.0 / (inp * k * k) as f32).sqrt(),
        )?;
        self.normal(format!("{bn}.weight"), &[out], 0.1)?;
        for t in self.tensors.last_mut().iter_mut() {
            t.1 = (&t.1 + 1.0)?;
        }
        self.normal(format!("{bn}.bias"), &[out], 0.1)?;
        self.normal(format!("{bn}.running_mean"), &[out], 0.1)?;
        self.fill(format!("{bn}.running_var"), &[out], 1.0)
    }

    fn linear(&mut self, name: &str, out: usize, inp: usize) -> FeatureResult<()> {
        self.normal(
            format!("{name}.weight"),
            &[out, inp],
            (1.0 / inp as f32).sqrt(),
        )?;
        self.normal(format!("{name}.bias"), &[out], 0.02)
    }

    fn layer_norm(&mut self, name: &str, dim: usize) -> FeatureResult<()> {
        self.fill(format!("{name}.weight"), &[dim], 1.0)?;
        self.fill(format!("{name}.bias"), &[dim], 0.0)
    }
}

/// A checkpoint for `spec` with random values; shape-agnostic entries have no canonical shape.
pub fn checkpoint(spec: &BackboneSpec, seed: u64) -> FeatureResult<Vec<(String, Tensor)>> {
    let mut b = Builder {
        rng: rand::rngs::StdRng::seed_from_u64(seed),
        tensors: Vec::new(),
    };
    let unsized_entry = || {
        FeatureError::Config(format!(
            "`{}` takes its shape from real weights; random weights need a sized name such as resnet50 or dino-vits16",
            spec.name
        ))
    };
    match spec.arch {
        Arch::ResNet { depths } => {
            let (depths, bottleneck) = depths.ok_or_else(unsized_entry)?;
            b.conv_bn("conv1", "bn1", 64, 3, 7)?;
            let expansion = if bottleneck { 4 } else { 1 };
            let mut inp = 64;
            for (s, &n) in depths.iter().enumerate() {
                let planes = 64 << s;
                for i in 0..n {
                    let p = format!("layer{}.{i}", s + 1);
                    if bottleneck {
                        b.conv_bn(&format!("{p}.conv1"), &format!("{p}.bn1"), planes, inp, 1)?;
                        b.conv_bn(
                            &format!("{p}.conv2"),
                            &format!("{p}.bn2"),
                            planes,
                            planes,
                            3,
                        )?;
                        b.conv_bn(
                            &format!("{p}.conv3"),
                            &format!("{p}.bn3"),
                            planes * 4,
                            planes,
                            1,
                        )?;
                    } else {
                        b.conv_bn(&format!("{p}.conv1"), &format!("{p}.bn1"), planes, inp, 3)?;
                        b.conv_bn(
                            &format!("{p}.conv2"),
                            &format!("{p}.bn2"),
                            planes,
                            planes,
                            3,
                        )?;
                    }
                    let out = planes * expansion;
                    if i == 0 && (s > 0 || inp != out) {
                        b.conv_bn(
                            &format!("{p}.downsample.0"),
                            &format!("{p}.downsample.1"),
                            out,
                            inp,
                            1,
                        )?;
                    }
                    inp = out;
                }
            }
            b.linear("fc", 1000, inp)?;
        }
        Arch::MobileNetV2 => {
            b.conv_bn("features.0.0", "features.0.1", 32, 3, 3)?;
            let table = [
                (1, 16, 1),
                (6, 24, 2),
                (6, 32, 3),
                (6, 64, 4),
                (6, 96, 3),
                (6, 160, 3),
                (6, 320, 1),
            ];
            let (mut inp, mut idx) = (32, 1);
            for (t, c, n) in table {
                for _ in 0..n {
                    let p = format!("features.{idx}.conv");
                    let hidden = inp * t;
                    if t == 1 {
                        b.normal(format!("{p}.0.0.weight"), &[hidden, 1, 3, 3], 1.0 / 3.0)?;
                        b.conv_bn_stats(&format!("{p}.0.1"), hidden)?;
                        b.conv_bn(&format!("{p}.1"), &format!("{p}.2"), c, hidden, 1)?;
                    } else {
                        b.conv_bn(&format!("{p}.0.0"), &format!("{p}.0.1"), hidden, inp, 1)?;
                        b.normal(format!("{p}.1.0.weight"), &[hidden, 1, 3, 3], 1.0 / 3.0)?;
                        b.conv_bn_stats(&format!("{p}.1.1"), hidden)?;
                        b.conv_bn(&format!("{p}.2"), &format!("{p}.3"), c, hidden, 1)?;
                    }
                    inp = c;
                    idx += 1;
                }
            }
            b.conv_bn("features.18.0", "features.18.1", 1280, inp, 1)?;
            b.linear("classifier.1", 1000, 1280)?;
        }
        Arch::Vit {
            family,
            width,
            patch,
            depth,
            ..
        } => {
            let (d, p, depth) = (
                width.ok_or_else(unsized_entry)?,
                patch.ok_or_else(unsized_entry)?,
                depth.ok_or_else(unsized_entry)?,
            );
            // DINOv2 checkpoints carry a 37×37 grid (518 px pretraining): resized at load.
            let grid = match family {
                VitFamily::Dino => spec.preprocess.crop as usize / p,
                VitFamily::Dinov2 => 37,
            };
            b.normal("embeddings.cls_token".into(), &[1, 1, d], 0.02)?;
            b.normal(
                "embeddings.position_embeddings".into(),
                &[1, 1 + grid * grid, d],
                0.02,
            )?;
            b.normal(
                "embeddings.patch_embeddings.projection.weight".into(),
                &[d, 3, p, p],
                (1.0 / (3 * p * p) as f32).sqrt(),
            )?;
            b.normal(
                "embeddings.patch_embeddings.projection.bias".into(),
                &[d],
                0.02,
            )?;
            for i in 0..depth {
                let l = format!("encoder.layer.{i}");
                for m in ["query", "key", "value"] {
                    b.linear(&format!("{l}.attention.attention.{m}"), d, d)?;
                }
                b.linear(&format!("{l}.attention.output.dense"), d, d)?;
                match family {
                    VitFamily::Dino => {
                        b.layer_norm(&format!("{l}.layernorm_before"), d)?;
                        b.layer_norm(&format!("{l}.layernorm_after"), d)?;
                        b.linear(&format!("{l}.intermediate.dense"), 4 * d, d)?;
                        b.linear(&format!("{l}.output.dense"), d, 4 * d)?;
                    }
                    VitFamily::Dinov2 => {
                        b.layer_norm(&format!("{l}.norm1"), d)?;
                        b.layer_norm(&format!("{l}.norm2"), d)?;
                        b.fill(format!("{l}.layer_scale1.lambda1"), &[d], 0.1)?;
                        b.fill(format!("{l}.layer_scale2.lambda1"), &[d], 0.1)?;
                        if d >= 1536 {
                            // ViT-g's SwiGLU: hidden = round_up(int(4d·2/3), 8).
                            let hidden = (4 * d * 2 / 3).div_ceil(8) * 8;
                            b.linear(&format!("{l}.mlp.weights_in"), 2 * hidden, d)?;
                            b.linear(&format!("{l}.mlp.weights_out"), d, hidden)?;
                        } else {
                            b.linear(&format!("{l}.mlp.fc1"), 4 * d, d)?;
                            b.linear(&format!("{l}.mlp.fc2"), d, 4 * d)?;
                        }
                    }
                }
            }
            b.layer_norm("layernorm", d)?;
        }
    }
    Ok(b.tensors)
}

impl Builder {
    fn conv_bn_stats(&mut self, bn: &str, ch: usize) -> FeatureResult<()> {
        self.fill(format!("{bn}.weight"), &[ch], 1.0)?;
        self.normal(format!("{bn}.bias"), &[ch], 0.1)?;
        self.normal(format!("{bn}.running_mean"), &[ch], 0.1)?;
        self.fill(format!("{bn}.running_var"), &[ch], 1.0)
    }
}
