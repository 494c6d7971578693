//! An explainer an application owns: built once beside its model (held by `Arc`), moved into a
//! worker thread, serving explanation requests from a channel with the weights it keeps between
//! calls.
//!
//! ```sh
//! cargo run --release --example serve
//! ```
//!
//! The model here is a small random MLP so that the example runs anywhere in a second; any
//! `Explain` model (the zoo's, an ONNX one) is served the same way.

use rap_attrib::burn::nn::{Linear, LinearConfig, Relu};
use rap_attrib::burn::tensor::{Device, Distribution, Tensor};
use rap_attrib::{Composite, Explain, Explainer, Node, Result, Target, Tracer};
use std::sync::Arc;
use std::sync::mpsc;

struct Mlp {
    fc1: Linear,
    act: Relu,
    fc2: Linear,
}

impl Explain for Mlp {
    fn trace<'m>(&'m self, t: &mut Tracer<'m>, x: Node) -> Result<Node> {
        let x = t.layer("fc1", &self.fc1, x)?;
        let x = t.layer("act", &self.act, x)?;
        t.layer("fc2", &self.fc2, x)
    }
}

/// One request: an input and where to send its answer.
struct Request {
    input: Tensor<2>,
    reply: mpsc::Sender<Result<(usize, Vec<f32>)>>,
}

fn main() -> Result<()> {
    let device = Device::default();
    let model = Arc::new(Mlp {
        fc1: LinearConfig::new(8, 32).init(&device),
        act: Relu::new(),
        fc2: LinearConfig::new(32, 4).init(&device),
    });
    // The explainer owns its share of the model: it is `Send + Sync + 'static`.
    let explainer = Explainer::new(Arc::clone(&model), Composite::rap());

    let (requests, inbox) = mpsc::channel::<Request>();
    let worker = std::thread::spawn(move || {
        for request in inbox {
            let answer = explainer.explain(request.input, Target::Predicted).map(|e| {
                let relevance = e.relevance.into_data().try_to_vec::<f32>().unwrap_or_default();
                (e.targets.first().copied().unwrap_or_default(), relevance)
            });
            // A client that went away is no error of the server's.
            let _ = request.reply.send(answer);
        }
    });

    for k in 0..3 {
        let (reply, answer) = mpsc::channel();
        let input = Tensor::<2>::random([1, 8], Distribution::Normal(0.0, 1.0), &device);
        if requests.send(Request { input, reply }).is_err() {
            break;
        }
        match answer.recv() {
            Ok(Ok((class, relevance))) => {
                let total: f32 = relevance.iter().sum();
                println!("request {k}: class {class}, Σ relevance = {total:.4}");
            }
            Ok(Err(e)) => println!("request {k}: {e}"),
            Err(_) => break,
        }
    }
    drop(requests);
    let _ = worker.join();
    Ok(())
}
