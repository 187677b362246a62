//! The OpenAI-compatible request types the frontend accepts, and the
//! token-level protocol between the frontend and an engine worker.

use serde::{Deserialize, Serialize};

/// One message of a chat.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`...
    pub role: String,
    /// The text.
    pub content: String,
}

/// `stream_options` of a request.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StreamOptions {
    /// Send a last chunk with `usage` before `[DONE]`.
    #[serde(default)]
    pub include_usage: bool,
}

/// `POST /v1/chat/completions`. Fields not listed here are accepted and
/// ignored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatCompletionRequest {
    /// The model to use.
    pub model: String,
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// Maximum tokens to generate.
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Newer name of `max_tokens`.
    #[serde(default)]
    pub max_completion_tokens: Option<u32>,
    /// Sampling temperature, passed to the engine.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass, passed to the engine.
    #[serde(default)]
    pub top_p: Option<f32>,
    /// Stop strings (one or a list), passed to the engine.
    #[serde(default)]
    pub stop: Option<Stop>,
    /// Stream server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Streaming options.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
}

/// `POST /v1/completions`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompletionRequest {
    /// The model to use.
    pub model: String,
    /// The prompt.
    pub prompt: String,
    /// Maximum tokens to generate.
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Sampling temperature, passed to the engine.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass, passed to the engine.
    #[serde(default)]
    pub top_p: Option<f32>,
    /// Stop strings (one or a list), passed to the engine.
    #[serde(default)]
    pub stop: Option<Stop>,
    /// Stream server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Streaming options.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
}

/// OpenAI's `stop`: one string or a list of them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Stop {
    /// One stop string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl Stop {
    /// The stop strings as a list.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s],
            Stop::Many(v) => v,
        }
    }
}

/// When an engine stops generating (the preprocessed request's
/// `stop_conditions`, as the original runtime names them).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StopConditions {
    /// At most this many tokens.
    pub max_tokens: u32,
    /// Stop strings the client gave (the engine decides how to honour them).
    #[serde(default)]
    pub stop: Vec<String>,
}

/// How an engine samples (the preprocessed request's `sampling_options`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SamplingOptions {
    /// Temperature; `None` is the engine's default.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass; `None` is the engine's default.
    #[serde(default)]
    pub top_p: Option<f32>,
}

/// What the frontend sends an engine worker: the preprocessed request.
///
/// ```
/// use dynamo_llm::protocols::EngineRequest;
/// // A worker built for the older form (token ids and max_tokens only) still reads it.
/// let r: EngineRequest = serde_json::from_str(r#"{"token_ids":[1,2],"max_tokens":3}"#)?;
/// assert_eq!(r.stop_conditions.max_tokens, 0);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EngineRequest {
    /// The prompt's tokens.
    pub token_ids: Vec<u32>,
    /// How many tokens to generate (the same as `stop_conditions.max_tokens`).
    pub max_tokens: u32,
    /// When to stop.
    #[serde(default)]
    pub stop_conditions: StopConditions,
    /// How to sample.
    #[serde(default)]
    pub sampling_options: SamplingOptions,
}

/// One step of an engine's output stream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EngineOutput {
    /// New tokens (usually one).
    pub token_ids: Vec<u32>,
    /// Set on the last output: `length` or `stop`.
    #[serde(default)]
    pub finish_reason: Option<String>,
}
