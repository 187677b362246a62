//! Drawing one frame of `dynamo top` with ratatui: the models, the workers
//! (one selected, its endpoints below), and sparklines of throughput and p99
//! time to first token over the last minutes. The same drawing serves the
//! terminal and `--once` (drawn into a buffer and printed as text).

use super::stats::{Quantiles, Stats, WorkerRow};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Sparkline, Table, Widget};
use std::collections::{BTreeMap, VecDeque};

/// Points a sparkline keeps: two minutes at one scrape a second.
pub const HISTORY: usize = 120;

/// How the workers are sorted; `s` moves to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    /// By address.
    #[default]
    Address,
    /// Busiest first.
    RequestRate,
    /// Most in flight first.
    Inflight,
    /// Most errors first.
    Errors,
}

impl SortKey {
    /// The next key, round.
    pub fn next(self) -> Self {
        match self {
            SortKey::Address => SortKey::RequestRate,
            SortKey::RequestRate => SortKey::Inflight,
            SortKey::Inflight => SortKey::Errors,
            SortKey::Errors => SortKey::Address,
        }
    }

    fn name(self) -> &'static str {
        match self {
            SortKey::Address => "address",
            SortKey::RequestRate => "req/s",
            SortKey::Inflight => "inflight",
            SortKey::Errors => "errors",
        }
    }
}

/// What stays between frames: the sort, the selected worker, the history.
#[derive(Debug, Clone, Default)]
pub struct ViewState {
    /// How the workers are sorted.
    pub sort: SortKey,
    /// The selected worker's address.
    pub selected: Option<String>,
    /// Output tokens per second of all models, one point per frame.
    pub throughput: VecDeque<f64>,
    /// The highest p99 time to first token of the models, ms, per frame.
    pub ttft_p99_ms: VecDeque<f64>,
    /// Without colour (`NO_COLOR`): emphasis only.
    pub no_color: bool,
}

impl ViewState {
    /// Adds a frame's figures to the history.
    pub fn record(&mut self, stats: &Stats) {
        push(
            &mut self.throughput,
            stats.models.iter().map(|m| m.output_tokens_per_s).sum(),
        );
        let p99 = stats
            .models
            .iter()
            .filter_map(|m| m.ttft.p99)
            .fold(0.0, f64::max);
        push(&mut self.ttft_p99_ms, p99 * 1000.0);
    }

    /// The workers in display order.
    pub fn sorted<'a>(&self, stats: &'a Stats) -> Vec<&'a WorkerRow> {
        let mut workers: Vec<&WorkerRow> = stats.workers.iter().collect();
        let key = |w: &WorkerRow| match self.sort {
            SortKey::Address => 0.0,
            SortKey::RequestRate => -w.requests_per_s,
            SortKey::Inflight => -w.inflight,
            SortKey::Errors => -w.errors,
        };
        workers.sort_by(|a, b| {
            key(a)
                .total_cmp(&key(b))
                .then_with(|| a.address.cmp(&b.address))
        });
        workers
    }

    /// Moves the selection `by` rows (clamped), in display order.
    pub fn move_selection(&mut self, stats: &Stats, by: isize) {
        let workers = self.sorted(stats);
        if workers.is_empty() {
            self.selected = None;
            return;
        }
        let now = self
            .selected
            .as_ref()
            .and_then(|a| workers.iter().position(|w| &w.address == a))
            .unwrap_or(0) as isize;
        let next = (now + by).clamp(0, workers.len() as isize - 1) as usize;
        self.selected = Some(workers[next].address.clone());
    }

    fn style(&self, color: Color) -> Style {
        if self.no_color {
            Style::default()
        } else {
            Style::default().fg(color)
        }
    }
}

fn push(history: &mut VecDeque<f64>, v: f64) {
    if history.len() == HISTORY {
        history.pop_front();
    }
    history.push_back(v);
}

/// A count: `3` (never `-0`, what an empty float sum is).
fn count(v: f64) -> String {
    format!("{}", v + 0.0)
}

/// `12.3` / `1.2k`.
fn rate(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1}k", v / 1000.0)
    } else {
        format!("{v:.1}")
    }
}

/// A latency, in the unit that reads best; `-` without one.
pub fn latency(v: Option<f64>) -> String {
    match v {
        None => "-".to_owned(),
        Some(s) if s >= 1.0 => format!("{s:.2} s"),
        Some(s) if s >= 0.001 => format!("{:.1} ms", s * 1000.0),
        Some(s) => format!("{:.0} µs", s * 1e6),
    }
}

fn errors(by_type: &BTreeMap<String, f64>) -> String {
    if by_type.is_empty() {
        return "0".to_owned();
    }
    by_type
        .iter()
        .map(|(t, n)| format!("{t} {}", count(*n)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn quantile_cells(q: &Quantiles) -> [Cell<'static>; 2] {
    [Cell::from(latency(q.p50)), Cell::from(latency(q.p99))]
}

/// Rows the frame needs to show everything at `stats`.
pub fn height_for(stats: &Stats, state: &ViewState) -> u16 {
    let endpoints = selected_worker(stats, state).map_or(1, |w| w.endpoints.len().max(1));
    let down = stats.frontends_down.len();
    (1 + (stats.models.len().max(1) + 3)
        + (stats.workers.len().max(1) + 3)
        + (endpoints + 3)
        + down
        + if state.throughput.len() < 2 { 1 } else { 6 }) as u16
}

fn selected_worker<'a>(stats: &'a Stats, state: &ViewState) -> Option<&'a WorkerRow> {
    let workers = state.sorted(stats);
    state
        .selected
        .as_ref()
        .and_then(|a| workers.iter().find(|w| &w.address == a).copied())
        // Until one is chosen: the first that is up (a down one has no
        // endpoints to show).
        .or_else(|| workers.iter().find(|w| w.down.is_none()).copied())
        .or_else(|| workers.first().copied())
}

/// Draws the frame into `area` of `buf`. Every column is at least one
/// character wider than its title, so titles stand two spaces apart (a
/// script can cut a `--once` row under them).
pub fn draw(stats: &Stats, state: &ViewState, area: Rect, buf: &mut Buffer) {
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let header_style = bold.patch(state.style(Color::Cyan));
    let workers = state.sorted(stats);
    let selected = selected_worker(stats, state);
    let endpoints = selected.map_or(0, |w| w.endpoints.len());
    let [title, models_area, workers_area, endpoints_area, sparks_area] = Layout::vertical([
        Constraint::Length(1 + stats.frontends_down.len() as u16),
        Constraint::Length(stats.models.len().max(1) as u16 + 3),
        Constraint::Length(workers.len().max(1) as u16 + 3),
        Constraint::Length(endpoints.max(1) as u16 + 3),
        Constraint::Min(if state.throughput.len() < 2 { 1 } else { 4 }),
    ])
    .areas(area);

    let mut title_lines = vec![Line::from(format!(
        "dynamo top  {}/{} targets up  interval {:.1} s  sort: {} (s)  select: ↑↓  quit: q",
        stats.targets_up,
        stats.targets,
        stats.interval,
        state.sort.name()
    ))
    .style(bold)];
    for d in &stats.frontends_down {
        title_lines.push(
            Line::from(format!("frontend {} DOWN: {}", d.address, d.error))
                .style(state.style(Color::Red)),
        );
    }
    Paragraph::new(title_lines).render(title, buf);

    let model_rows: Vec<Row> = stats
        .models
        .iter()
        .map(|m| {
            let [ttft50, ttft99] = quantile_cells(&m.ttft);
            let [itl50, itl99] = quantile_cells(&m.itl);
            let err_style = if m.errors.is_empty() {
                Style::default()
            } else {
                state.style(Color::Red)
            };
            Row::new(vec![
                Cell::from(m.model.clone()),
                Cell::from(rate(m.requests_per_s)),
                Cell::from(rate(m.output_tokens_per_s)),
                ttft50,
                ttft99,
                itl50,
                itl99,
                Cell::from(count(m.inflight)),
                Cell::from(count(m.requests_total)),
                Cell::from(if m.errors_per_s > 0.0 {
                    format!("{} ({}/s now)", errors(&m.errors), rate(m.errors_per_s))
                } else {
                    errors(&m.errors)
                })
                .style(err_style),
            ])
        })
        .collect();
    Table::new(
        model_rows,
        [
            Constraint::Min(16),
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Min(10),
        ],
    )
    .header(
        Row::new([
            "MODEL", "REQ/S", "TOK/S", "TTFT p50", "TTFT p99", "ITL p50", "ITL p99", "INFLIGHT",
            "REQUESTS", "ERRORS",
        ])
        .style(header_style),
    )
    .block(
        Block::default()
            .borders(Borders::TOP)
            .title(" Models (last interval) "),
    )
    .render(models_area, buf);

    let worker_rows: Vec<Row> = workers
        .iter()
        .map(|w| {
            let is_selected = selected.is_some_and(|s| s.address == w.address);
            let mut style = Style::default();
            if is_selected {
                style = style.add_modifier(Modifier::REVERSED);
            }
            let state_cell = match &w.down {
                Some(_) => {
                    Cell::from("DOWN").style(state.style(Color::Red).add_modifier(Modifier::BOLD))
                }
                None => Cell::from("up").style(state.style(Color::Green)),
            };
            let opt_pct = |v: Option<f64>, scale: f64| {
                v.map_or("-".to_owned(), |v| format!("{:.0}%", v * scale))
            };
            let gpu_mem = w.gpu_memory.map_or("-".to_owned(), |(used, total)| {
                format!("{:.1}/{:.1} GiB", used / 1024.0, total / 1024.0)
            });
            let cells = match &w.down {
                Some(e) => vec![
                    Cell::from(format!(
                        "{}{}",
                        if is_selected { "> " } else { "  " },
                        w.address
                    )),
                    state_cell,
                    // The reason in the widest column.
                    Cell::from("-"),
                    Cell::from("-"),
                    Cell::from("-"),
                    Cell::from("-"),
                    Cell::from("-"),
                    Cell::from("-"),
                    Cell::from(e.clone()),
                ],
                None => vec![
                    Cell::from(format!(
                        "{}{}",
                        if is_selected { "> " } else { "  " },
                        w.address
                    )),
                    state_cell,
                    Cell::from(rate(w.requests_per_s)),
                    Cell::from(count(w.inflight)),
                    Cell::from(count(w.errors)),
                    Cell::from(opt_pct(w.kv_usage, 100.0)),
                    Cell::from(w.waiting.map_or("-".to_owned(), count)),
                    Cell::from(opt_pct(w.gpu_util, 1.0)),
                    Cell::from(gpu_mem),
                ],
            };
            Row::new(cells).style(style)
        })
        .collect();
    Table::new(
        worker_rows,
        [
            Constraint::Min(24),
            Constraint::Length(6),
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Length(7),
            Constraint::Length(6),
            Constraint::Length(8),
            Constraint::Length(6),
            Constraint::Min(14),
        ],
    )
    .header(
        Row::new([
            "WORKER", "STATE", "REQ/S", "INFLIGHT", "ERRORS", "KV", "WAITING", "GPU", "GPU MEM",
        ])
        .style(header_style),
    )
    .block(Block::default().borders(Borders::TOP).title(" Workers "))
    .render(workers_area, buf);

    let endpoint_rows: Vec<Row> = selected
        .map(|w| {
            w.endpoints
                .iter()
                .map(|e| {
                    let [p50, p99] = quantile_cells(&e.duration);
                    Row::new(vec![
                        Cell::from(e.path.clone()),
                        Cell::from(rate(e.requests_per_s)),
                        Cell::from(count(e.inflight)),
                        p50,
                        p99,
                        Cell::from(errors(&e.errors)),
                    ])
                })
                .collect()
        })
        .unwrap_or_default();
    let endpoints_title = match selected {
        Some(w) => format!(" Endpoints of {} ", w.address),
        None => " Endpoints ".to_owned(),
    };
    Table::new(
        endpoint_rows,
        [
            Constraint::Min(28),
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Min(10),
        ],
    )
    .header(
        Row::new([
            "ENDPOINT", "REQ/S", "INFLIGHT", "DUR p50", "DUR p99", "ERRORS",
        ])
        .style(header_style),
    )
    .block(
        Block::default()
            .borders(Borders::TOP)
            .title(endpoints_title),
    )
    .render(endpoints_area, buf);

    if state.throughput.len() < 2 {
        // One interval (`--once`): the figures, no history to draw.
        Paragraph::new(Line::from(format!(
            "now: {} output tokens/s, TTFT p99 {} (sparklines of the last minutes in the live view)",
            rate(state.throughput.back().copied().unwrap_or(0.0)),
            latency(state.ttft_p99_ms.back().map(|ms| ms / 1000.0).filter(|s| *s > 0.0))
        )))
        .render(sparks_area, buf);
        return;
    }
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
            .areas(sparks_area);
    sparkline(
        &state.throughput,
        &format!(
            " Output tokens/s (now {}) ",
            rate(state.throughput.back().copied().unwrap_or(0.0))
        ),
        state.style(Color::Green),
    )
    .render(left, buf);
    sparkline(
        &state.ttft_p99_ms,
        &format!(
            " TTFT p99 (now {}) ",
            latency(
                state
                    .ttft_p99_ms
                    .back()
                    .map(|ms| ms / 1000.0)
                    .filter(|s| *s > 0.0)
            )
        ),
        state.style(Color::Yellow),
    )
    .render(right, buf);
}

fn sparkline<'a>(history: &VecDeque<f64>, title: &str, style: Style) -> Sparkline<'a> {
    let data: Vec<u64> = history.iter().map(|v| v.max(0.0).round() as u64).collect();
    Sparkline::default()
        .block(
            Block::default()
                .borders(Borders::TOP)
                .title(title.to_owned()),
        )
        .data(data)
        .style(style)
}

/// The frame as plain text, `width` columns wide: for `--once`.
pub fn to_text(stats: &Stats, state: &ViewState, width: u16) -> String {
    let area = Rect::new(0, 0, width, height_for(stats, state));
    let mut buf = Buffer::empty(area);
    draw(stats, state, area, &mut buf);
    let mut lines: Vec<String> = (0..area.height)
        .map(|y| {
            let line: String = (0..area.width).map(|x| buf[(x, y)].symbol()).collect();
            line.trim_end().to_owned()
        })
        .collect();
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    lines.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::super::stats::{DownTarget, EndpointRow, ModelRow};
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn stats() -> Stats {
        let worker = |address: &str, rps: f64, errors: f64| WorkerRow {
            address: address.to_owned(),
            requests_per_s: rps,
            inflight: 3.0,
            errors,
            kv_usage: Some(0.42),
            waiting: Some(1.0),
            gpu_util: Some(87.0),
            gpu_memory: Some((40_960.0, 81_920.0)),
            endpoints: vec![EndpointRow {
                path: format!("dynamo/backend/generate@{address}"),
                requests_per_s: rps,
                inflight: 3.0,
                duration: Quantiles {
                    p50: Some(0.4),
                    p99: Some(1.5),
                },
                ..EndpointRow::default()
            }],
            ..WorkerRow::default()
        };
        Stats {
            interval: 1.0,
            models: vec![ModelRow {
                model: "llama".into(),
                requests_per_s: 12.5,
                output_tokens_per_s: 800.0,
                ttft: Quantiles {
                    p50: Some(0.052),
                    p99: Some(0.250),
                },
                itl: Quantiles {
                    p50: Some(0.0105),
                    p99: Some(0.000_5),
                },
                inflight: 7.0,
                requests_total: 1234.0,
                errors: BTreeMap::from([("engine".to_owned(), 2.0)]),
                errors_per_s: 0.5,
            }],
            workers: vec![
                worker("10.0.0.1:8081", 5.0, 0.0),
                worker("10.0.0.2:8081", 7.5, 4.0),
                WorkerRow {
                    address: "10.0.0.3:8081".into(),
                    down: Some("connection refused".into()),
                    ..WorkerRow::default()
                },
            ],
            frontends_down: vec![DownTarget {
                address: "10.0.0.9:8080".into(),
                error: "timed out".into(),
            }],
            targets_up: 3,
            targets: 5,
        }
    }

    fn render(stats: &Stats, state: &ViewState, width: u16, height: u16) -> Buffer {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal
            .draw(|f| {
                let area = f.area();
                draw(stats, state, area, f.buffer_mut())
            })
            .unwrap();
        terminal.backend().buffer().clone()
    }

    fn text(buf: &Buffer) -> String {
        let area = buf.area;
        (0..area.height)
            .map(|y| {
                (0..area.width)
                    .map(|x| buf[(x, y)].symbol())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn a_frame_shows_models_workers_endpoints_and_who_is_down() {
        let stats = stats();
        let mut state = ViewState::default();
        state.record(&stats);
        let screen = text(&render(&stats, &state, 130, 34));
        for want in [
            "3/5 targets up",
            "frontend 10.0.0.9:8080 DOWN: timed out",
            "llama",
            "12.5",
            "800.0",
            "52.0 ms",
            "250.0 ms",
            "10.5 ms",
            "500 µs",
            "1234",
            "engine 2 (0.5/s now)",
            "10.0.0.3:8081",
            "DOWN",
            "connection refused",
            "42%",
            "87%",
            "40.0/80.0 GiB",
            "Endpoints of 10.0.0.1:8081",
            "dynamo/backend/generate@10.0.0.1:8081",
            "400.0 ms",
            "1.50 s",
            "now: 800.0 output tokens/s, TTFT p99 250.0 ms",
        ] {
            assert!(screen.contains(want), "{want:?} not on screen:\n{screen}");
        }
        // The first worker (by address) is selected.
        assert!(screen.contains("> 10.0.0.1:8081"), "{screen}");
        // With history, sparklines.
        state.record(&stats);
        let screen = text(&render(&stats, &state, 130, 34));
        assert!(screen.contains("Output tokens/s (now 800.0)"), "{screen}");
        assert!(screen.contains("TTFT p99 (now 250.0 ms)"), "{screen}");
        assert!(screen.contains('█'), "{screen}");
    }

    #[test]
    fn sort_and_selection_move_the_rows() {
        let stats = stats();
        let mut state = ViewState::default();
        state.sort = state.sort.next();
        assert_eq!(state.sort, SortKey::RequestRate);
        let order: Vec<&str> = state
            .sorted(&stats)
            .iter()
            .map(|w| w.address.as_str())
            .collect();
        assert_eq!(order, ["10.0.0.2:8081", "10.0.0.1:8081", "10.0.0.3:8081"]);
        state.move_selection(&stats, 1);
        assert_eq!(state.selected.as_deref(), Some("10.0.0.1:8081"));
        state.move_selection(&stats, 5);
        assert_eq!(state.selected.as_deref(), Some("10.0.0.3:8081"));
        state.move_selection(&stats, -1);
        let screen = text(&render(&stats, &state, 130, 34));
        assert!(screen.contains("Endpoints of 10.0.0.1:8081"), "{screen}");
        state.sort = state.sort.next().next();
        assert_eq!(state.sorted(&stats)[0].address, "10.0.0.2:8081");
    }

    #[test]
    fn it_draws_at_any_size_and_without_colour() {
        let stats = stats();
        let mut state = ViewState {
            no_color: true,
            ..ViewState::default()
        };
        state.record(&stats);
        // A small terminal cuts the frame, never panics.
        for (w, h) in [(40, 10), (1, 1), (200, 60)] {
            render(&stats, &state, w, h);
        }
        let buf = render(&stats, &state, 130, 34);
        let area = buf.area;
        for y in 0..area.height {
            for x in 0..area.width {
                let cell = &buf[(x, y)];
                assert_eq!(cell.fg, Color::Reset, "colour at ({x}, {y}) under NO_COLOR");
            }
        }
        let coloured = render(&stats, &ViewState::default(), 130, 34);
        assert!((0..34).any(|y| (0..130).any(|x| coloured[(x, y)].fg != Color::Reset)));
    }

    #[test]
    fn the_plain_text_frame_fits_everything() {
        let stats = stats();
        let text = to_text(&stats, &ViewState::default(), 120);
        assert!(text.lines().all(|l| l.chars().count() <= 120));
        assert!(text.contains("10.0.0.3:8081") && text.contains("llama"));
        assert!(!text.ends_with("\n\n"));
    }
}
