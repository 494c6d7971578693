//! The wiring of a parsed graph, for the loaders that find a region of nodes by structure
//! (self-attention, Swin's window attention and patch merging).

use onnx_ir::Node;
use std::collections::{HashMap, HashSet};

/// A node that moves an activation's elements around (or scales them by a computed factor)
/// between a projection and the attention it feeds.
pub(super) fn is_routing(n: &Node) -> bool {
    matches!(
        n,
        Node::Reshape(_)
            | Node::Transpose(_)
            | Node::Gather(_)
            | Node::Squeeze(_)
            | Node::Unsqueeze(_)
            | Node::Mul(_)
            | Node::Div(_)
    )
}

/// The graph's wiring: what computes each value, who reads it, and which values carry the
/// input (computed through anything but `Shape`).
pub(super) struct Wiring<'a> {
    nodes: &'a [Node],
    pub(super) act: HashSet<String>,
    pub(super) producer: HashMap<String, usize>,
    pub(super) consumers: HashMap<String, Vec<usize>>,
}

impl<'a> Wiring<'a> {
    pub(super) fn new(nodes: &'a [Node], input: &str) -> Self {
        let mut act: HashSet<String> = HashSet::from([input.to_string()]);
        let mut producer = HashMap::new();
        let mut consumers: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, n) in nodes.iter().enumerate() {
            let carries = !matches!(n, Node::Shape(_)) && n.inputs().iter().any(|a| act.contains(&a.name));
            for o in n.outputs() {
                producer.insert(o.name.clone(), i);
                if carries {
                    act.insert(o.name.clone());
                }
            }
            for a in n.inputs() {
                consumers.entry(a.name.clone()).or_default().push(i);
            }
        }
        Self { nodes, act, producer, consumers }
    }

    pub(super) fn node(&self, i: usize) -> Option<&'a Node> {
        self.nodes.get(i)
    }

    pub(super) fn producer_of(&self, value: &str) -> Option<(usize, &'a Node)> {
        let p = *self.producer.get(value)?;
        Some((p, self.nodes.get(p)?))
    }

    /// The first input of `n` that carries the activation.
    pub(super) fn carried(&self, n: &Node) -> Option<String> {
        n.inputs().iter().find(|a| self.act.contains(&a.name)).map(|a| a.name.clone())
    }

    pub(super) fn out(&self, i: usize) -> Option<String> {
        self.nodes.get(i).and_then(|n| n.outputs().first()).map(|a| a.name.clone())
    }

    /// The consumers of node `i`'s output that carry the activation on (a `Shape` does not).
    pub(super) fn carriers(&self, i: usize) -> Vec<usize> {
        self.out(i)
            .and_then(|o| self.consumers.get(&o))
            .map(|c| {
                c.iter().copied().filter(|&u| self.node(u).is_some_and(|n| !matches!(n, Node::Shape(_)))).collect()
            })
            .unwrap_or_default()
    }

    /// Back from `v` through routing nodes to a `Linear`.
    pub(super) fn back_to_linear(&self, mut v: String) -> Option<usize> {
        for _ in 0..64 {
            let (p, n) = self.producer_of(&v)?;
            match n {
                Node::Linear(_) => return Some(p),
                _ if is_routing(n) => {}
                _ => return None,
            }
            v = self.carried(n)?;
        }
        None
    }

    /// Every node from `last` back to the value `x` (`x`'s producer and what precedes it
    /// excluded), or `None` where one of them (other than `last`) has an activation read from
    /// outside.
    pub(super) fn members(&self, last: usize, x: &str) -> Option<HashSet<usize>> {
        let mut members = HashSet::new();
        let mut stack = vec![last];
        while let Some(i) = stack.pop() {
            if !members.insert(i) {
                continue;
            }
            for a in self.node(i).map(|n| n.inputs()).unwrap_or(&[]) {
                if a.name != x
                    && let Some(&p) = self.producer.get(&a.name)
                {
                    stack.push(p);
                }
            }
        }
        let leaks = members.iter().filter(|&&i| i != last).any(|&i| {
            self.node(i).is_some_and(|n| {
                n.outputs().iter().filter(|o| self.act.contains(&o.name)).any(|o| {
                    self.consumers.get(&o.name).is_some_and(|c| {
                        c.iter().any(|u| {
                            !members.contains(u) && self.node(*u).is_some_and(|n| !matches!(n, Node::Shape(_)))
                        })
                    })
                })
            })
        });
        (!leaks).then_some(members)
    }
}
