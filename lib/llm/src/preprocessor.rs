//! The preprocessor: applies the chat template, tokenizes with a real BPE
//! tokenizer (tiktoken's `cl100k_base`, whose vocabulary ships inside the
//! `tiktoken-rs` crate), and detokenizes the output incrementally. Its metrics
//! use the `dynamo_preprocessor_` prefix.

use crate::protocols::ChatMessage;
use dynamo_runtime::prometheus::IntCounter;
use dynamo_runtime::prometheus_names::{
    frontend as fe, preprocessor as names, PREPROCESSOR_PREFIX,
};
use dynamo_runtime::Histogram;
use dynamo_runtime::{IntCounterVec, MetricsError, MetricsScope};
use std::time::Instant;
use tiktoken_rs::CoreBPE;

/// The largest piece of a prompt the tokenizer is given at once.
pub const TOKENIZE_CHUNK_BYTES: usize = 8 * 1024;

/// The tokenizer failed on a prompt.
#[derive(Debug, thiserror::Error)]
#[error("the prompt ({prompt_bytes} bytes) could not be tokenized")]
pub struct TokenizeError {
    /// The prompt's length in bytes.
    pub prompt_bytes: usize,
}

/// `text` in pieces of at most `max` bytes (more only for one character
/// wider than `max`), each cut after the last whitespace in it where there
/// is one, else at a character boundary.
fn chunks(text: &str, max: usize) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        if rest.len() <= max {
            return Some(std::mem::take(&mut rest));
        }
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        if let Some(ws) = rest[..cut].rfind(char::is_whitespace) {
            let after = ws + rest[ws..].chars().next().map_or(1, char::len_utf8);
            if after > 0 && after < rest.len() {
                cut = after;
            }
        }
        if cut == 0 {
            cut = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        let (piece, tail) = rest.split_at(cut);
        rest = tail;
        Some(piece)
    })
}

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
    ///
    /// The work is bounded whatever the prompt holds: it is tokenized in
    /// pieces of at most [`TOKENIZE_CHUNK_BYTES`], cut after whitespace where
    /// there is some (the tokenizer's regex backtracks over long runs, and
    /// failed on a million spaces), and a failure of the tokenizer is an
    /// error, never a panic. CPU-heavy for long prompts: call it off the
    /// async threads (the frontend uses `spawn_blocking`).
    pub fn tokenize(&self, model: &str, prompt: &str) -> Result<Vec<u32>, TokenizeError> {
        let start = Instant::now();
        let mut ids = Vec::with_capacity(prompt.len() / 4 + 1);
        for piece in chunks(prompt, TOKENIZE_CHUNK_BYTES) {
            let encoded =
                std::panic::catch_unwind(|| self.bpe.encode_ordinary(piece)).map_err(|_| {
                    TokenizeError {
                        prompt_bytes: prompt.len(),
                    }
                })?;
            ids.extend(encoded);
        }
        self.tokenize_seconds.observe(start.elapsed().as_secs_f64());
        self.requests.with_label_values(&[model]).inc();
        self.input_tokens
            .with_label_values(&[model])
            .inc_by(ids.len() as u64);
        Ok(ids)
    }

    /// A decoder for one response.
    pub fn decoder(&self, model: &str) -> Decoder {
        Decoder {
            table: token_bytes(self.bpe),
            pending: Vec::new(),
            pending_tokens: 0,
            text: String::new(),
            counter: self.output_tokens.with_label_values(&[model]),
        }
    }
}

/// Every token's bytes, by id (`None` for ids the vocabulary lacks): the
/// decoder appends a token's bytes to its buffer with no allocation, where
/// the tokenizer's own `decode` builds a new `String` per call.
#[derive(Debug)]
struct TokenBytes(Vec<Option<Box<[u8]>>>);

/// Built once per process (cl100k: 100,277 ids, about 1 MB), on the first
/// decoder.
fn token_bytes(bpe: &'static CoreBPE) -> &'static TokenBytes {
    static TABLE: std::sync::OnceLock<TokenBytes> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = Vec::new();
        let mut misses = 0;
        // Ids are dense up to the special tokens, which follow with gaps.
        for id in 0u32.. {
            match bpe.decode_bytes(&[id]) {
                Ok(bytes) => {
                    table.resize(id as usize, None);
                    table.push(Some(bytes.into_boxed_slice()));
                    misses = 0;
                }
                Err(_) => {
                    misses += 1;
                    if misses > 1024 {
                        break;
                    }
                }
            }
        }
        TokenBytes(table)
    })
}

/// Turns output tokens into text as they come. A token that ends inside a
/// UTF-8 character is held until the character is complete (at most
/// [`HOLD_TOKENS`] tokens; bytes that still do not form one are written
/// lossily).
pub struct Decoder {
    table: &'static TokenBytes,
    /// Bytes of an incomplete character, held.
    pending: Vec<u8>,
    /// Tokens whose bytes are held.
    pending_tokens: usize,
    /// The text of the last push (reused).
    text: String,
    counter: IntCounter,
}

/// The most tokens a split character is held for.
pub const HOLD_TOKENS: usize = 8;

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("pending_bytes", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl Decoder {
    /// The text of these tokens (possibly empty while a character is
    /// incomplete), valid until the next push. Ids outside the vocabulary
    /// have no text.
    pub fn push(&mut self, ids: &[u32]) -> &str {
        self.counter.inc_by(ids.len() as u64);
        self.text.clear();
        for id in ids {
            if let Some(Some(bytes)) = self.table.0.get(*id as usize) {
                self.pending.extend_from_slice(bytes);
            }
        }
        self.pending_tokens += ids.len();
        match std::str::from_utf8(&self.pending) {
            Ok(text) => {
                self.text.push_str(text);
                self.pending.clear();
                self.pending_tokens = 0;
            }
            // An incomplete character at the end: the text before it now,
            // its bytes held for the next tokens.
            Err(e) if e.error_len().is_none() && self.pending_tokens < HOLD_TOKENS => {
                let valid = e.valid_up_to();
                if valid > 0 {
                    self.text
                        .push_str(&String::from_utf8_lossy(&self.pending[..valid]));
                    self.pending.drain(..valid);
                    self.pending_tokens = 1;
                }
            }
            // Not a split character after all: give up on these bytes.
            Err(_) => {
                self.text.push_str(&String::from_utf8_lossy(&self.pending));
                self.pending.clear();
                self.pending_tokens = 0;
            }
        }
        &self.text
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
        let ids = p.tokenize("m", "Hello, wörld! 🚀").unwrap();
        assert!(ids.len() > 3 && ids.len() < 16, "{ids:?}");
        let mut d = p.decoder("m");
        let text: String = ids.iter().map(|id| d.push(&[*id]).to_owned()).collect();
        assert_eq!(
            text, "Hello, wörld! 🚀",
            "token by token, split characters held back"
        );
    }

    #[test]
    fn chunks_cut_after_whitespace_at_char_boundaries_and_lose_nothing() {
        let text = "ab cd ef";
        assert_eq!(chunks(text, 4).collect::<Vec<_>>(), ["ab ", "cd ", "ef"]);
        assert_eq!(chunks("abcdef", 4).collect::<Vec<_>>(), ["abcd", "ef"]);
        assert_eq!(chunks("🚀🚀", 5).collect::<Vec<_>>(), ["🚀", "🚀"]);
        assert_eq!(chunks("🚀", 2).collect::<Vec<_>>(), ["🚀"]);
        assert_eq!(chunks("", 4).count(), 0);
        for (text, max) in [("a b  c\n\td   e", 3), ("x y", 1), ("ü ü ü", 2)] {
            let pieces: Vec<&str> = chunks(text, max).collect();
            assert_eq!(pieces.concat(), text, "{pieces:?}");
            assert!(pieces.iter().all(|p| !p.is_empty()), "{pieces:?}");
        }
    }

    #[test]
    fn hostile_prompts_tokenize_in_bounded_pieces_without_panicking() {
        let p = pre();
        for prompt in [
            " ".repeat(1_000_000),
            "\n".repeat(300_000),
            "a".repeat(300_000),
            "🚀".repeat(50_000),
            " a".repeat(200_000),
        ] {
            let ids = p.tokenize("m", &prompt).unwrap();
            assert!(!ids.is_empty());
        }
        // Short prompts tokenize as one piece would.
        let text = "The quick brown fox jumps over the lazy dog. ".repeat(10);
        assert_eq!(
            p.tokenize("m", &text).unwrap(),
            p.bpe.encode_ordinary(&text)
        );
    }
}
