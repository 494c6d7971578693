//! The zoo's architectures as network descriptions.

use crate::error::{AttribError, Result};
use crate::spec::{HostTensor, LayerDesc, NetworkDesc};
use std::collections::HashMap;

/// A torchvision architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Architecture {
    /// `torchvision.models.vgg16` (no BatchNorm).
    Vgg16,
    /// `torchvision.models.resnet18` (BasicBlock).
    ResNet18,
    /// `torchvision.models.resnet50` (Bottleneck, v1.5: stride on the 3×3 conv).
    ResNet50,
    /// `torchvision.models.squeezenet1_1`.
    SqueezeNet1_1,
}

/// Size options of a zoo network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZooConfig {
    num_classes: usize,
    width_divisor: usize,
}

impl Default for ZooConfig {
    fn default() -> Self {
        Self { num_classes: 1000, width_divisor: 1 }
    }
}

impl ZooConfig {
    /// `num_classes` outputs (1000 for ImageNet), every channel width (and VGG's classifier
    /// width) divided by `width_divisor` (1 is torchvision's network; narrower networks keep the
    /// names and the structure, for quick experiments). Checked when the network is described.
    pub fn new(num_classes: usize, width_divisor: usize) -> Self {
        Self { num_classes, width_divisor }
    }

    /// Number of output classes.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// The width divisor.
    pub fn width_divisor(&self) -> usize {
        self.width_divisor
    }
}

fn conv(name: &str, cin: usize, cout: usize, k: usize, s: usize, p: usize, bias: bool) -> LayerDesc {
    LayerDesc::conv2d(name, [cin, cout], k, s, p, bias)
}

fn bn(name: &str, c: usize) -> LayerDesc {
    LayerDesc::batch_norm(name, c)
}

fn relu(name: &str) -> LayerDesc {
    LayerDesc::relu(name)
}

impl std::str::FromStr for Architecture {
    type Err = AttribError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().replace(['-', '_', '.'], "").as_str() {
            "vgg16" => Ok(Architecture::Vgg16),
            "resnet18" => Ok(Architecture::ResNet18),
            "resnet50" => Ok(Architecture::ResNet50),
            "squeezenet11" | "squeezenet" => Ok(Architecture::SqueezeNet1_1),
            _ => Err(AttribError::InvalidParameter(format!(
                "unknown model `{s}`; expected one of vgg16, resnet18, resnet50, squeezenet1_1"
            ))),
        }
    }
}

impl Architecture {
    /// All architectures.
    pub const ALL: [Architecture; 4] =
        [Architecture::Vgg16, Architecture::ResNet18, Architecture::ResNet50, Architecture::SqueezeNet1_1];

    /// The torchvision name.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Vgg16 => "vgg16",
            Architecture::ResNet18 => "resnet18",
            Architecture::ResNet50 => "resnet50",
            Architecture::SqueezeNet1_1 => "squeezenet1_1",
        }
    }

    /// The input layer's name.
    pub fn input_layer(self) -> &'static str {
        match self {
            Architecture::Vgg16 | Architecture::SqueezeNet1_1 => "features.0",
            Architecture::ResNet18 | Architecture::ResNet50 => "conv1",
        }
    }

    /// The output layer's name.
    pub fn output_layer(self) -> &'static str {
        match self {
            Architecture::Vgg16 => "classifier.6",
            Architecture::ResNet18 | Architecture::ResNet50 => "fc",
            Architecture::SqueezeNet1_1 => "classifier.1",
        }
    }

    /// Reads the number of classes and the width divisor from a parameter map.
    pub fn infer_config(self, params: &HashMap<String, HostTensor>) -> Result<ZooConfig> {
        let out = format!("{}.weight", self.output_layer());
        let first = format!("{}.weight", self.input_layer());
        let get = |k: &str| {
            params
                .get(k)
                .ok_or_else(|| AttribError::Weights(format!("missing tensor `{k}`: not a {} checkpoint", self.name())))
        };
        let leading = |k: &str| -> Result<usize> {
            get(k)?.shape.first().copied().ok_or_else(|| {
                AttribError::Weights(format!("tensor `{k}` is a scalar; expected a weight matrix or kernel"))
            })
        };
        let num_classes = leading(&out)?;
        let width = leading(&first)?;
        let full = 64;
        if width == 0 || full % width != 0 {
            return Err(AttribError::Weights(format!(
                "tensor `{first}` has {width} output channels; expected 64 (or 64 divided by a whole number) for {}",
                self.name()
            )));
        }
        Ok(ZooConfig { num_classes, width_divisor: full / width })
    }

    /// The network description (the golden sidecar format, typed) with torchvision's names.
    pub fn describe(self, config: &ZooConfig) -> Result<NetworkDesc> {
        let d = config.width_divisor;
        if d == 0 {
            return Err(AttribError::InvalidParameter(
                "ZooConfig::width_divisor = 0 is not allowed; expected at least 1 (1 is torchvision's width)".into(),
            ));
        }
        let w = |c: usize| (c / d).max(1);
        if config.num_classes == 0 {
            return Err(AttribError::InvalidParameter(
                "ZooConfig::num_classes = 0 is not allowed; a zoo model needs at least one class".into(),
            ));
        }
        let mut layers = Vec::new();
        match self {
            Architecture::Vgg16 => {
                let plan: [&[usize]; 5] =
                    [&[64, 64], &[128, 128], &[256, 256, 256], &[512, 512, 512], &[512, 512, 512]];
                let (mut i, mut cin) = (0, 3);
                for stage in plan {
                    for &c in stage {
                        layers.push(conv(&format!("features.{i}"), cin, w(c), 3, 1, 1, true));
                        layers.push(relu(&format!("features.{}", i + 1)));
                        cin = w(c);
                        i += 2;
                    }
                    layers.push(LayerDesc::max_pool(&format!("features.{i}"), 2, 2, 0, false));
                    i += 1;
                }
                layers.push(LayerDesc::adaptive_avg_pool("avgpool", 7));
                let hidden = w(4096);
                layers.push(LayerDesc::linear("classifier.0", cin * 49, hidden));
                layers.push(relu("classifier.1"));
                layers.push(LayerDesc::dropout("classifier.2", 0.5));
                layers.push(LayerDesc::linear("classifier.3", hidden, hidden));
                layers.push(relu("classifier.4"));
                layers.push(LayerDesc::dropout("classifier.5", 0.5));
                layers.push(LayerDesc::linear("classifier.6", hidden, config.num_classes));
            }
            Architecture::ResNet18 | Architecture::ResNet50 => {
                let basic = self == Architecture::ResNet18;
                let blocks: [usize; 4] = if basic { [2, 2, 2, 2] } else { [3, 4, 6, 3] };
                let expansion = if basic { 1 } else { 4 };
                layers.push(conv("conv1", 3, w(64), 7, 2, 3, false));
                layers.push(bn("bn1", w(64)));
                layers.push(relu("relu"));
                layers.push(LayerDesc::max_pool("maxpool", 3, 2, 1, false));
                let mut cin = w(64);
                for (s, &n) in blocks.iter().enumerate() {
                    let planes = w(64 << s);
                    for b in 0..n {
                        let name = format!("layer{}.{b}", s + 1);
                        let stride = if b == 0 && s > 0 { 2 } else { 1 };
                        let cout = planes * expansion;
                        let ds = b == 0 && (stride != 1 || cin != cout);
                        layers.push(LayerDesc::resnet_block(&name, !basic, ds));
                        let n = |c: &str| format!("{name}.{c}");
                        if basic {
                            layers.push(conv(&n("conv1"), cin, planes, 3, stride, 1, false));
                            layers.push(bn(&n("bn1"), planes));
                            layers.push(relu(&n("relu1")));
                            layers.push(conv(&n("conv2"), planes, planes, 3, 1, 1, false));
                            layers.push(bn(&n("bn2"), planes));
                            layers.push(relu(&n("relu2")));
                        } else {
                            layers.push(conv(&n("conv1"), cin, planes, 1, 1, 0, false));
                            layers.push(bn(&n("bn1"), planes));
                            layers.push(relu(&n("relu1")));
                            layers.push(conv(&n("conv2"), planes, planes, 3, stride, 1, false));
                            layers.push(bn(&n("bn2"), planes));
                            layers.push(relu(&n("relu2")));
                            layers.push(conv(&n("conv3"), planes, cout, 1, 1, 0, false));
                            layers.push(bn(&n("bn3"), cout));
                            layers.push(relu(&n("relu3")));
                        }
                        if ds {
                            layers.push(conv(&n("downsample.0"), cin, cout, 1, stride, 0, false));
                            layers.push(bn(&n("downsample.1"), cout));
                        }
                        layers.push(LayerDesc::add(&n("add")));
                        cin = cout;
                    }
                }
                layers.push(LayerDesc::adaptive_avg_pool("avgpool", 1));
                layers.push(LayerDesc::linear("fc", cin, config.num_classes));
            }
            Architecture::SqueezeNet1_1 => {
                layers.push(conv("features.0", 3, w(64), 3, 2, 0, true));
                layers.push(relu("features.1"));
                let pool = |i: usize| LayerDesc::max_pool(&format!("features.{i}"), 3, 2, 0, true);
                layers.push(pool(2));
                let fires: [(usize, usize, usize, usize); 8] = [
                    (3, 64, 16, 64),
                    (4, 128, 16, 64),
                    (6, 128, 32, 128),
                    (7, 256, 32, 128),
                    (9, 256, 48, 192),
                    (10, 384, 48, 192),
                    (11, 384, 64, 256),
                    (12, 512, 64, 256),
                ];
                for (i, cin, sq, ex) in fires {
                    if i == 6 || i == 9 {
                        layers.push(pool(i - 1));
                    }
                    let name = format!("features.{i}");
                    let n = |c: &str| format!("{name}.{c}");
                    // The first Fire's input is features.0's output, w(64); others double expand.
                    let cin = if i == 3 { w(64) } else { 2 * w(cin / 2) };
                    layers.push(LayerDesc::fire(&name));
                    layers.push(conv(&n("squeeze"), cin, w(sq), 1, 1, 0, true));
                    layers.push(relu(&n("squeeze_activation")));
                    layers.push(conv(&n("expand1x1"), w(sq), w(ex), 1, 1, 0, true));
                    layers.push(relu(&n("expand1x1_activation")));
                    layers.push(conv(&n("expand3x3"), w(sq), w(ex), 3, 1, 1, true));
                    layers.push(relu(&n("expand3x3_activation")));
                    layers.push(LayerDesc::cat(&n("cat")));
                }
                layers.push(LayerDesc::dropout("classifier.0", 0.5));
                layers.push(conv("classifier.1", 2 * w(256), config.num_classes, 1, 1, 0, true));
                layers.push(relu("classifier.2"));
                layers.push(LayerDesc::adaptive_avg_pool("classifier.3", 1));
            }
        }
        let desc = NetworkDesc::new(layers).with_input_shape(vec![1, 3, 224, 224]);
        desc.validate()?;
        Ok(desc)
    }
}
