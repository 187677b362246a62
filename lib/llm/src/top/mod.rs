//! `dynamo top`: the deployment at a glance, in the terminal. Finds every
//! process through a frontend's `/discovery/prometheus` (or takes targets
//! given), scrapes each `/metrics` every interval, and shows per model and
//! per worker what the last interval looked like ([`stats`]), drawn with
//! ratatui ([`view`]).
//!
//! A target that does not answer is shown as down; the program goes on.

pub mod stats;
pub mod view;

use dynamo_runtime::exposition;
use futures::future::join_all;
use stats::{Scrape, ServerKind, TargetScrape};
use std::time::{Duration, Instant};
use view::ViewState;

/// The largest body read from a target (`/metrics`) or from discovery.
const MAX_BODY_BYTES: usize = 64 << 20;

/// What `dynamo top` watches and how.
#[derive(Debug, Clone)]
pub struct TopConfig {
    /// A frontend's base URL, whose `/discovery/prometheus` lists the targets.
    pub url: Option<String>,
    /// Targets given directly (`host:port`), read for everything.
    pub targets: Vec<String>,
    /// Between scrapes.
    pub interval: Duration,
    /// Deadline of one target's scrape (and of discovery).
    pub timeout: Duration,
}

/// Errors that stop `dynamo top` before it shows anything.
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    /// Neither a URL nor targets.
    #[error("nothing to watch: give --url of a frontend or --target host:port")]
    NoTargets,
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    /// The terminal could not be used.
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
}

/// Reads the targets.
#[derive(Debug)]
pub struct Scraper {
    config: TopConfig,
    client: reqwest::Client,
    /// The targets discovery listed last (kept while discovery fails).
    known: Vec<(String, ServerKind)>,
    start: Instant,
}

#[derive(serde::Deserialize)]
struct SdGroup {
    targets: Vec<String>,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
}

impl Scraper {
    /// A scraper of `config`'s targets.
    pub fn new(config: TopConfig) -> Result<Self, TopError> {
        if config.url.is_none() && config.targets.is_empty() {
            return Err(TopError::NoTargets);
        }
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .build()?;
        Ok(Self {
            config,
            client,
            known: Vec::new(),
            start: Instant::now(),
        })
    }

    /// The targets to read now: discovery's answer (or the last one, with
    /// the frontend itself, when discovery fails) and the given ones.
    async fn targets(&mut self) -> Vec<(String, ServerKind)> {
        let mut out: Vec<(String, ServerKind)> = Vec::new();
        if let Some(url) = &self.config.url {
            let base = url.trim_end_matches('/');
            match self.discover(base).await {
                Ok(found) => self.known = found,
                Err(e) => tracing::debug!(error = %e, "discovery failed; keeping the last targets"),
            }
            out.extend(self.known.iter().cloned());
            let own = base
                .trim_start_matches("http://")
                .trim_start_matches("https://")
                .to_owned();
            if !out.iter().any(|(a, _)| *a == own) {
                out.push((own, ServerKind::Frontend));
            }
        }
        for t in &self.config.targets {
            if !out.iter().any(|(a, _)| a == t) {
                out.push((t.clone(), ServerKind::Any));
            }
        }
        out
    }

    async fn discover(&self, base: &str) -> Result<Vec<(String, ServerKind)>, String> {
        let response = self
            .client
            .get(format!("{base}/discovery/prometheus"))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let body = read_limited(response).await?;
        let groups: Vec<SdGroup> = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        Ok(groups
            .into_iter()
            .flat_map(|g| {
                let kind = ServerKind::from_label(
                    g.labels
                        .get("dynamo_server")
                        .map(String::as_str)
                        .unwrap_or(""),
                );
                g.targets.into_iter().map(move |t| (t, kind))
            })
            .collect())
    }

    async fn read(&self, address: &str) -> Result<Vec<exposition::Family>, String> {
        let response = self
            .client
            .get(format!("http://{address}/metrics"))
            .send()
            .await
            .map_err(|e| short_error(&e))?;
        let body = read_limited(response).await?;
        // Parsing is CPU work: off the async threads.
        tokio::task::spawn_blocking(move || {
            let text = String::from_utf8_lossy(&body);
            exposition::parse(&text).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Reads every target once, concurrently.
    pub async fn scrape(&mut self) -> Scrape {
        let targets = self.targets().await;
        let at = self.start.elapsed().as_secs_f64();
        let results = join_all(targets.iter().map(|(a, _)| self.read(a))).await;
        Scrape {
            at,
            targets: targets
                .into_iter()
                .zip(results)
                .map(|((address, kind), result)| TargetScrape {
                    address,
                    kind,
                    result,
                })
                .collect(),
        }
    }
}

/// A successful response's body, refused past [`MAX_BODY_BYTES`].
async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| short_error(&e))? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(format!("a body larger than {MAX_BODY_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn short_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection refused".to_owned()
    } else {
        e.to_string()
    }
}

/// True when `NO_COLOR` asks for no colour (set and not empty).
pub fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Two scrapes an interval apart, drawn once as text `width` columns wide.
pub async fn once(config: TopConfig, width: u16) -> Result<String, TopError> {
    let interval = config.interval;
    let mut scraper = Scraper::new(config)?;
    let before = scraper.scrape().await;
    tokio::time::sleep(interval).await;
    let now = scraper.scrape().await;
    let stats = stats::compute(&before, &now);
    let mut state = ViewState {
        no_color: true,
        ..ViewState::default()
    };
    state.record(&stats);
    Ok(view::to_text(&stats, &state, width))
}

/// The interactive view, until `q`.
pub async fn run(config: TopConfig) -> Result<(), TopError> {
    let interval = config.interval;
    let mut scraper = Scraper::new(config)?;
    let (tx, rx) = tokio::sync::watch::channel(None);
    // The scraper: one scrape per interval, each compared with the last.
    let scraping = tokio::spawn(async move {
        let mut before = scraper.scrape().await;
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let now = scraper.scrape().await;
            if tx.send(Some(stats::compute(&before, &now))).is_err() {
                return;
            }
            before = now;
        }
    });
    // The terminal: drawn and read on a thread of its own (crossterm blocks).
    let ui = tokio::task::spawn_blocking(move || ui_loop(rx));
    let result = ui
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
    scraping.abort();
    result.map_err(TopError::Terminal)
}

fn ui_loop(mut rx: tokio::sync::watch::Receiver<Option<stats::Stats>>) -> std::io::Result<()> {
    use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
    let mut terminal = ratatui::init();
    let mut state = ViewState {
        no_color: no_color(),
        ..ViewState::default()
    };
    let mut stats = stats::Stats::default();
    let result = (|| loop {
        if rx.has_changed().unwrap_or(false) {
            if let Some(s) = rx.borrow_and_update().clone() {
                state.record(&s);
                stats = s;
            }
        }
        terminal.draw(|f| {
            let area = f.area();
            view::draw(&stats, &state, area, f.buffer_mut());
        })?;
        if event::poll(Duration::from_millis(200))? {
            if let Event::Key(key) = event::read()? {
                if key.kind != KeyEventKind::Press {
                    continue;
                }
                match key.code {
                    KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                    KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                        return Ok(())
                    }
                    KeyCode::Char('s') => state.sort = state.sort.next(),
                    KeyCode::Up => state.move_selection(&stats, -1),
                    KeyCode::Down => state.move_selection(&stats, 1),
                    _ => {}
                }
            }
        }
    })();
    ratatui::restore();
    result
}
