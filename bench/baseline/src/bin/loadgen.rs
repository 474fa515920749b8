//! The benchmark's load generator: HTTP/1.1 keep-alive connections on one thread, each
//! sending the same POST body, bounded in time (and optionally in count), on loopback only.
//!
//! - Closed loop (default): every connection sends its next request as soon as the answer
//!   to the previous one is in; the throughput is the server's saturation at that many
//!   connections.
//! - Open loop (`--rate R`): arrivals at R per second, Poisson (or `--arrivals constant`),
//!   spread over the connections. Latency counts from the moment a request was due, so a
//!   server that falls behind is charged for the queue it builds (no coordinated omission).
//!
//! A request fails when the connection fails, when the status is not 2xx, or (with
//! `--graphql`) when the body holds an `"errors"` member. Only answers that arrive inside
//! the measured window count (after `--warmup`, before its end). Prints one JSON object.
//!
//! ```text
//! loadgen --url http://127.0.0.1:8080/graphql --body request.json --header 'Authorization: Bearer …'
//!         [--connections 8] [--duration 10] [--warmup 2] [--rate 1500] [--arrivals poisson|constant]
//!         [--requests N] [--graphql]
//! ```

use std::{
    cell::{Cell, RefCell},
    collections::BTreeMap,
    net::SocketAddr,
    rc::Rc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{
    Request, Uri,
    header::{CONTENT_TYPE, HOST, HeaderName, HeaderValue},
};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpStream;

/// How long answers still in flight at the end of the window are waited for.
const GRACE: Duration = Duration::from_secs(5);
/// A count-bounded run (`--requests`) stops after this long whatever it has done.
const COUNT_RUN_LIMIT: Duration = Duration::from_secs(300);

struct Options {
    url: Uri,
    body: Bytes,
    headers: Vec<(HeaderName, HeaderValue)>,
    connections: usize,
    duration: Duration,
    warmup: Duration,
    rate: Option<f64>,
    poisson: bool,
    requests: Option<u64>,
    graphql: bool,
}

fn usage(message: &str) -> ! {
    eprintln!("loadgen: {message}");
    eprintln!(
        "usage: loadgen --url URL --body FILE [--header 'Name: value']... [--connections N] [--duration SECONDS] \
         [--warmup SECONDS] [--rate PER_SECOND] [--arrivals poisson|constant] [--requests N] [--graphql]"
    );
    std::process::exit(2)
}

fn seconds(text: &str) -> Duration {
    let text = text.trim_end_matches('s');
    text.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 3600.0)
        .map(Duration::from_secs_f64)
        .unwrap_or_else(|| usage("a duration is a number of seconds up to 3600"))
}

fn options() -> Options {
    let mut args = std::env::args().skip(1);
    let (mut url, mut body, mut headers) = (None, None, Vec::new());
    let mut options = Options {
        url: Uri::from_static("http://127.0.0.1/"),
        body: Bytes::new(),
        headers: Vec::new(),
        connections: 8,
        duration: Duration::from_secs(10),
        warmup: Duration::ZERO,
        rate: None,
        poisson: true,
        requests: None,
        graphql: false,
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--url" => url = Some(value()),
            "--body" => body = Some(value()),
            "--header" => headers.push(value()),
            "--connections" => {
                options.connections = value()
                    .parse()
                    .ok()
                    .filter(|n| (1..=1024).contains(n))
                    .unwrap_or_else(|| usage("1 to 1024 connections"))
            }
            "--duration" => options.duration = seconds(&value()),
            "--warmup" => options.warmup = seconds(&value()),
            "--rate" => {
                options.rate = Some(
                    value()
                        .parse::<f64>()
                        .ok()
                        .filter(|r| r.is_finite() && *r > 0.0 && *r <= 1e6)
                        .unwrap_or_else(|| usage("a rate is a positive number of requests per second")),
                )
            }
            "--arrivals" => {
                options.poisson = match value().as_str() {
                    "poisson" => true,
                    "constant" => false,
                    _ => usage("arrivals are poisson or constant"),
                }
            }
            "--requests" => {
                options.requests = Some(
                    value()
                        .parse()
                        .ok()
                        .filter(|n| (1..=10_000_000).contains(n))
                        .unwrap_or_else(|| usage("1 to 10^7 requests")),
                )
            }
            "--graphql" => options.graphql = true,
            other => usage(&format!("unknown argument {other}")),
        }
    }
    options.url =
        url.unwrap_or_else(|| usage("--url is required")).parse().unwrap_or_else(|_| usage("--url is not a URL"));
    let body = body.unwrap_or_else(|| usage("--body is required"));
    options.body = std::fs::read(&body).unwrap_or_else(|err| usage(&format!("cannot read {body}: {err}"))).into();
    for header in headers {
        let (name, value) = header.split_once(':').unwrap_or_else(|| usage("a header is 'Name: value'"));
        let name = HeaderName::try_from(name.trim()).unwrap_or_else(|_| usage("bad header name"));
        let value = HeaderValue::try_from(value.trim()).unwrap_or_else(|_| usage("bad header value"));
        options.headers.push((name, value));
    }
    options
}

/// The loopback address to connect to; any other address is refused.
fn target(url: &Uri) -> SocketAddr {
    let host = url.host().unwrap_or_else(|| usage("--url needs a host"));
    let host = if host == "localhost" { "127.0.0.1" } else { host.trim_start_matches('[').trim_end_matches(']') };
    let ip: std::net::IpAddr = host.parse().unwrap_or_else(|_| usage("--url must name a loopback IP address"));
    if !ip.is_loopback() {
        usage("the load generator only sends to loopback addresses");
    }
    SocketAddr::new(ip, url.port_u16().unwrap_or(80))
}

#[derive(Default)]
struct Stats {
    latencies_us: Vec<u32>,
    failures: BTreeMap<String, u64>,
    sample_failure: Option<String>,
    first_send: Option<Instant>,
    last_done: Option<Instant>,
}

impl Stats {
    fn fail(&mut self, kind: String, sample: impl FnOnce() -> String) {
        *self.failures.entry(kind).or_default() += 1;
        if self.sample_failure.is_none() {
            self.sample_failure = Some(sample());
        }
    }
}

/// When requests go out, and when they stop.
struct Schedule {
    measure_from: Instant,
    end: Instant,
    rate: Option<f64>,
    poisson: bool,
    next: Cell<Instant>,
    rng: Cell<u64>,
    budget: Option<u64>,
    sent: Cell<u64>,
}

impl Schedule {
    /// The moment the next request is due, or `None` when the run is over.
    fn next_due(&self) -> Option<Instant> {
        if self.budget.is_some_and(|budget| self.sent.get() >= budget) {
            return None;
        }
        let due = match self.rate {
            None => Instant::now(),
            Some(rate) => {
                let due = self.next.get();
                let gap = if self.poisson { -self.uniform().ln() / rate } else { 1.0 / rate };
                self.next.set(due + Duration::from_secs_f64(gap));
                due
            }
        };
        if due >= self.end {
            return None;
        }
        self.sent.set(self.sent.get() + 1);
        Some(due)
    }

    /// A uniform sample in (0, 1] (xorshift64*).
    fn uniform(&self) -> f64 {
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        ((x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    fn counts(&self, due: Instant, done: Instant) -> bool {
        self.budget.is_some() || (due >= self.measure_from && done <= self.end)
    }
}

struct Worker {
    options: Rc<Options>,
    addr: SocketAddr,
    schedule: Rc<Schedule>,
    stats: Rc<RefCell<Stats>>,
}

impl Worker {
    fn request(&self) -> Request<Full<Bytes>> {
        let path = self.options.url.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let mut request = Request::post(path).body(Full::new(self.options.body.clone())).expect("a valid request");
        let headers = request.headers_mut();
        let authority = self.options.url.authority().map(|a| a.as_str()).unwrap_or("127.0.0.1");
        headers.insert(HOST, HeaderValue::from_str(authority).expect("an authority is a valid header"));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in &self.options.headers {
            headers.insert(name.clone(), value.clone());
        }
        request
    }

    async fn run(self) {
        'connect: loop {
            let stream = match TcpStream::connect(self.addr).await {
                Ok(stream) => stream,
                Err(err) => {
                    let Some(due) = self.schedule.next_due() else { return };
                    if self.schedule.counts(due, Instant::now()) {
                        self.stats.borrow_mut().fail("connect".to_owned(), || err.to_string());
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let Ok((mut sender, connection)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            tokio::task::spawn_local(connection);
            loop {
                let Some(due) = self.schedule.next_due() else { return };
                if self.schedule.rate.is_some() {
                    tokio::time::sleep_until(due.into()).await;
                }
                {
                    let mut stats = self.stats.borrow_mut();
                    stats.first_send.get_or_insert(due);
                }
                if sender.ready().await.is_err() {
                    self.record_failure(due, "io".to_owned(), || "connection closed".to_owned());
                    continue 'connect;
                }
                let answer = match sender.send_request(self.request()).await {
                    Ok(response) => {
                        let status = response.status();
                        match response.into_body().collect().await {
                            Ok(body) => Ok((status, body.to_bytes())),
                            Err(err) => Err(err),
                        }
                    }
                    Err(err) => Err(err),
                };
                let done = Instant::now();
                match answer {
                    Ok((status, body)) => {
                        let failure = if !status.is_success() {
                            Some(format!("status {}", status.as_u16()))
                        } else if self.options.graphql && memchr::memmem::find(&body, b"\"errors\"").is_some() {
                            Some("graphql errors".to_owned())
                        } else {
                            None
                        };
                        if !self.schedule.counts(due, done) {
                            continue;
                        }
                        let mut stats = self.stats.borrow_mut();
                        stats.last_done = Some(done);
                        match failure {
                            None => {
                                let micros = done.duration_since(due).as_micros().min(u32::MAX as u128) as u32;
                                stats.latencies_us.push(micros);
                            }
                            Some(kind) => {
                                stats.fail(kind, || String::from_utf8_lossy(&body[..body.len().min(400)]).into_owned())
                            }
                        }
                    }
                    Err(err) => {
                        self.record_failure(due, "io".to_owned(), || err.to_string());
                        continue 'connect;
                    }
                }
            }
        }
    }

    fn record_failure(&self, due: Instant, kind: String, sample: impl FnOnce() -> String) {
        let done = Instant::now();
        if self.schedule.counts(due, done) {
            let mut stats = self.stats.borrow_mut();
            stats.last_done = Some(done);
            stats.fail(kind, sample);
        }
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[index.clamp(1, sorted.len()) - 1]) / 1000.0
}

fn main() {
    let options = Rc::new(options());
    let addr = target(&options.url);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let local = tokio::task::LocalSet::new();
    let stats = Rc::new(RefCell::new(Stats::default()));
    let start = Instant::now();
    let measure_from = start + options.warmup;
    let end = if options.requests.is_some() { start + COUNT_RUN_LIMIT } else { measure_from + options.duration };
    let seed = start.elapsed().as_nanos() as u64 ^ u64::from(std::process::id()) ^ 0x9E37_79B9_7F4A_7C15;
    let schedule = Rc::new(Schedule {
        measure_from,
        end,
        rate: options.rate,
        poisson: options.poisson,
        next: Cell::new(start),
        rng: Cell::new(seed | 1),
        budget: options.requests,
        sent: Cell::new(0),
    });
    local.block_on(&runtime, async {
        let workers: Vec<_> = (0..options.connections)
            .map(|_| {
                let worker =
                    Worker { options: options.clone(), addr, schedule: schedule.clone(), stats: stats.clone() };
                tokio::task::spawn_local(worker.run())
            })
            .collect();
        let all = async {
            for worker in workers {
                let _ = worker.await;
            }
        };
        let _ = tokio::time::timeout_at((end + GRACE).into(), all).await;
    });

    let mut stats = stats.take();
    stats.latencies_us.sort_unstable();
    let ok = stats.latencies_us.len() as u64;
    let failed: u64 = stats.failures.values().sum();
    let elapsed = match options.requests {
        Some(_) => match (stats.first_send, stats.last_done) {
            (Some(first), Some(last)) => last.duration_since(first).as_secs_f64(),
            _ => 0.0,
        },
        None => options.duration.as_secs_f64(),
    };
    let mean = if ok == 0 {
        0.0
    } else {
        stats.latencies_us.iter().map(|&us| f64::from(us)).sum::<f64>() / ok as f64 / 1000.0
    };
    let report = json!({
        "ok": ok,
        "failed": failed,
        "failures": stats.failures,
        "sample_failure": stats.sample_failure,
        "elapsed_s": elapsed,
        "rps": if elapsed > 0.0 { ok as f64 / elapsed } else { 0.0 },
        "connections": options.connections,
        "offered_rate": options.rate,
        "arrivals": options.rate.map(|_| if options.poisson { "poisson" } else { "constant" }),
        "latency_ms": {
            "mean": mean,
            "p50": percentile(&stats.latencies_us, 50.0),
            "p90": percentile(&stats.latencies_us, 90.0),
            "p99": percentile(&stats.latencies_us, 99.0),
            "p999": percentile(&stats.latencies_us, 99.9),
            "max": stats.latencies_us.last().map_or(0.0, |&us| f64::from(us) / 1000.0),
        },
    });
    println!("{report}");
}
