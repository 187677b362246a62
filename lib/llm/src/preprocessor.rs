//! The preprocessor: applies the chat template, tokenizes with a real BPE
//! tokenizer (tiktoken's `cl100k_base`, whose vocabulary ships inside the
//! `tiktoken-rs` crate), and detokenizes the output incrementally. Its metrics
//! use the `dynamo_preprocessor_` prefix.

use crate::protocols::ChatMessage;
use dynamo_runtime::prometheus::{Histogram, IntCounter};
use dynamo_runtime::prometheus_names::{
    frontend as fe, preprocessor as names, PREPROCESSOR_PREFIX,
};
use dynamo_runtime::{IntCounterVec, MetricsError, MetricsScope};
use std::time::Instant;
use tiktoken_rs::CoreBPE;

/// Template, tokenizer and the preprocessor's metrics.
pub struct Preprocessor {
    bpe: &'static CoreBPE,
    requests: IntCounterVec,
    input_tokens: IntCounterVec,
    output_tokens: IntCounterVec,
    tokenize_seconds: Histogram,
}

impl std::fmt::Debug for Preprocessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preprocessor").finish_non_exhaustive()
    }
}

impl Preprocessor {
    /// Loads the tokenizer and registers the metrics under `scope`.
    pub fn new(scope: &MetricsScope) -> Result<Self, MetricsError> {
        let scope = scope.with_prefix(PREPROCESSOR_PREFIX)?;
        Ok(Self {
            bpe: tiktoken_rs::cl100k_base_singleton(),
            requests: scope.create_intcountervec(
                names::REQUESTS_TOTAL,
                "Prompts tokenized",
                &[fe::MODEL],
                &[],
            )?,
            input_tokens: scope.create_intcountervec(
                names::INPUT_TOKENS_TOTAL,
                "Prompt tokens produced by the tokenizer",
                &[fe::MODEL],
                &[],
            )?,
            output_tokens: scope.create_intcountervec(
                names::OUTPUT_TOKENS_TOTAL,
                "Output tokens detokenized",
                &[fe::MODEL],
                &[],
            )?,
            tokenize_seconds: scope.create_histogram(
                names::TOKENIZE_SECONDS,
                "Time spent applying the chat template and tokenizing",
                &[],
                Some(vec![
                    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0,
                ]),
            )?,
        })
    }

    /// The prompt a chat becomes (ChatML).
    pub fn apply_chat_template(messages: &[ChatMessage]) -> String {
        let mut out = String::new();
        for m in messages {
            out.push_str("<|im_start|>");
            out.push_str(&m.role);
            out.push('\n');
            out.push_str(&m.content);
            out.push_str("<|im_end|>\n");
        }
        out.push_str("<|im_start|>assistant\n");
        out
    }

    /// Tokenizes a prompt (special tokens are plain text here) and counts it.
    pub fn tokenize(&self, model: &str, prompt: &str) -> Vec<u32> {
        let start = Instant::now();
        let ids = self.bpe.encode_ordinary(prompt);
        self.tokenize_seconds.observe(start.elapsed().as_secs_f64());
        self.requests.with_label_values(&[model]).inc();
        self.input_tokens
            .with_label_values(&[model])
            .inc_by(ids.len() as u64);
        ids
    }

    /// A decoder for one response.
    pub fn decoder(&self, model: &str) -> Decoder {
        Decoder {
            bpe: self.bpe,
            pending: Vec::new(),
            counter: self.output_tokens.with_label_values(&[model]),
        }
    }
}

/// Turns output tokens into text as they come. A token that ends inside a
/// UTF-8 character is held until the character is complete.
pub struct Decoder {
    bpe: &'static CoreBPE,
    pending: Vec<u32>,
    counter: IntCounter,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("pending_tokens", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl Decoder {
    /// The text of these tokens (possibly empty while a character is incomplete).
    pub fn push(&mut self, ids: &[u32]) -> String {
        self.counter.inc_by(ids.len() as u64);
        self.pending.extend_from_slice(ids);
        match self.bpe.decode(&self.pending) {
            Ok(text) => {
                self.pending.clear();
                text
            }
            Err(_) if self.pending.len() < 8 => String::new(),
            Err(_) => {
                // Not a split character after all: give up on these bytes.
                let bytes: Vec<u8> = self
                    .bpe
                    ._decode_native_and_split(std::mem::take(&mut self.pending))
                    .flatten()
                    .collect();
                String::from_utf8_lossy(&bytes).into_owned()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pre() -> Preprocessor {
        let drt = dynamo_runtime::DistributedRuntime::from_config(Default::default()).unwrap();
        Preprocessor::new(drt.metrics()).unwrap()
    }

    #[test]
    fn template_and_round_trip() {
        let p = pre();
        let prompt = Preprocessor::apply_chat_template(&[ChatMessage {
            role: "user".into(),
            content: "Hello, wörld! 🚀".into(),
        }]);
        assert_eq!(
            prompt,
            "<|im_start|>user\nHello, wörld! 🚀<|im_end|>\n<|im_start|>assistant\n"
        );
        let ids = p.tokenize("m", "Hello, wörld! 🚀");
        assert!(ids.len() > 3 && ids.len() < 16, "{ids:?}");
        let mut d = p.decoder("m");
        let text: String = ids.iter().map(|id| d.push(&[*id])).collect();
        assert_eq!(
            text, "Hello, wörld! 🚀",
            "token by token, split characters held back"
        );
    }
}
