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

/// `POST /v1/chat/completions`. Fields the mock engine has no use for
/// (temperature, top_p...) are accepted and ignored.
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
    /// Stream server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Streaming options.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
}

/// What the frontend sends an engine worker.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EngineRequest {
    /// The prompt's tokens.
    pub token_ids: Vec<u32>,
    /// How many tokens to generate.
    pub max_tokens: u32,
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
