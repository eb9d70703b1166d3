//! One retry policy for every HTTP call flow-ci makes to a service (sign-in,
//! Azure ML, storage, the forges): a call that fails in a way that may pass
//! is tried again, after the wait the service asks for (`Retry-After`, see
//! [`crate::http::retry_after`]) or else after a backoff that doubles, up to
//! a number of attempts. Which answers may pass is the caller's to say (each
//! service documents its own); how to wait and when to stop is here.

use std::time::Duration;

/// How often and how patiently a call is tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Tries, the first included.
    pub attempts: u32,
    /// The wait before the first retry when the service names none;
    /// doubled before each further one.
    pub backoff: Duration,
    /// The longest wait, asked for or not.
    pub max_wait: Duration,
}

/// What one failed try says about the next.
pub enum Next<E> {
    /// Try again, after this long if the service said.
    Retry(E, Option<Duration>),
    /// Give up with this error.
    Stop(E),
}

impl Policy {
    /// Azure's default, as azure-core's `RetryPolicy` (3 retries after the
    /// first try, backoff factor 0.8 s, exponential).
    pub const AZURE: Policy =
        Policy { attempts: 4, backoff: Duration::from_millis(800), max_wait: Duration::from_secs(60) };

    /// The wait before retry number `retry` (1 for the first): what the
    /// service asked for, else the backoff doubled `retry - 1` times; at
    /// most `max_wait`.
    pub fn wait(&self, retry: u32, asked: Option<Duration>) -> Duration {
        let doubled = self.backoff.saturating_mul(1u32 << retry.saturating_sub(1).min(20));
        asked.unwrap_or(doubled).min(self.max_wait)
    }

    /// Runs `once` (given the attempt number, from 1) until it succeeds,
    /// says to stop, or has been tried `attempts` times; each retry is one
    /// `info` line naming the failure (`E`'s `Display`, which must hold no
    /// secret).
    pub fn run<T, E: std::fmt::Display>(&self, mut once: impl FnMut(u32) -> Result<T, Next<E>>) -> Result<T, E> {
        let mut attempt = 1;
        loop {
            match once(attempt) {
                Ok(done) => return Ok(done),
                Err(Next::Stop(error)) => return Err(error),
                Err(Next::Retry(error, _)) if attempt >= self.attempts => return Err(error),
                Err(Next::Retry(error, asked)) => {
                    let wait = self.wait(attempt, asked);
                    tracing::info!("{error}; retrying in {:.1}s", wait.as_secs_f64());
                    std::thread::sleep(wait);
                    attempt += 1;
                }
            }
        }
    }
}

/// The answers azure-core's `RetryPolicy` retries by default: 408, 429,
/// 500, 502, 503, 504.
pub fn transient(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// What an answer says about trying again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The answer is final (success or not): the caller reads it.
    Keep,
    /// Try again, after this long if the service said.
    Retry(Option<Duration>),
}

/// Which transport failures a request is sent again after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resend {
    /// None: where no connection means no service (IMDS off Azure), and
    /// the caller moves on at once.
    Never,
    /// A connection that could not be made (the request never left): for
    /// requests that must not run twice (creating a comment).
    IfNotSent,
    /// Any (a timeout, a connection cut mid-answer too): for requests that
    /// may run twice (reads, token requests, writes of the same value).
    Always,
}

/// Sends `request` with `client` under `policy`: an answer that `verdict`
/// (given it and the attempt number) says to retry is tried again, and so is
/// a transport failure that `resend` allows. Returns the last answer,
/// whatever its status, or the last transport error. A request whose body
/// cannot be copied (a stream) is sent once.
pub fn send(
    client: &reqwest::blocking::Client,
    request: reqwest::blocking::Request,
    policy: &Policy,
    resend: Resend,
    verdict: impl Fn(&reqwest::blocking::Response, u32) -> Verdict,
) -> Result<reqwest::blocking::Response, reqwest::Error> {
    let what = format!("{} {}", request.method(), request.url().path());
    let mut spare = Some(request);
    let outcome = policy.run(|attempt| {
        let request = spare.take().ok_or_else(|| Next::Stop(Failure::Gone))?;
        spare = request.try_clone();
        let can_retry = spare.is_some();
        match client.execute(request) {
            Ok(response) => match verdict(&response, attempt) {
                Verdict::Retry(wait) if can_retry => Err(Next::Retry(Failure::Answer(what.clone(), response), wait)),
                _ => Ok(response),
            },
            Err(e) if can_retry && (resend == Resend::Always || (resend == Resend::IfNotSent && e.is_connect())) => {
                Err(Next::Retry(Failure::Transport(what.clone(), e), None))
            }
            Err(e) => Err(Next::Stop(Failure::Transport(what.clone(), e))),
        }
    });
    match outcome {
        Ok(response) | Err(Failure::Answer(_, response)) => Ok(response),
        Err(Failure::Transport(_, e)) => Err(e),
        // `spare` is refilled before every retry.
        Err(Failure::Gone) => unreachable!("a retry without a copy of the request"),
    }
}

/// Why one try of [`send`] did not give the final answer.
enum Failure {
    Answer(String, reqwest::blocking::Response),
    Transport(String, reqwest::Error),
    Gone,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Answer(what, response) => write!(f, "{what} answered {}", response.status().as_u16()),
            // Without the URL: its query may carry a SAS token.
            Failure::Transport(what, e) => write!(f, "{what} failed: {}", crate::http::transport_error(e)),
            Failure::Gone => write!(f, "no request to send"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Policy = Policy { attempts: 4, backoff: Duration::ZERO, max_wait: Duration::ZERO };

    #[test]
    fn waits_double_from_the_backoff_unless_the_service_names_one() {
        let p = Policy { attempts: 5, backoff: Duration::from_millis(500), max_wait: Duration::from_secs(3) };
        let waits: Vec<u128> = (1..=5).map(|r| p.wait(r, None).as_millis()).collect();
        assert_eq!(waits, [500, 1000, 2000, 3000, 3000]);
        assert_eq!(p.wait(1, Some(Duration::from_secs(2))), Duration::from_secs(2));
        assert_eq!(p.wait(1, Some(Duration::from_secs(600))), Duration::from_secs(3));
        assert_eq!(Policy::AZURE.wait(200, None), Duration::from_secs(60), "no overflow");
    }

    #[test]
    fn retries_stop_at_the_attempts_or_when_told() {
        let mut tries = 0;
        let failed: Result<(), String> = NOW.run(|_| {
            tries += 1;
            Err(Next::Retry("busy".to_string(), None))
        });
        assert_eq!((failed, tries), (Err("busy".into()), 4));
        let mut tries = 0;
        let stopped: Result<(), String> = NOW.run(|_| {
            tries += 1;
            Err(Next::Stop("denied".to_string()))
        });
        assert_eq!((stopped, tries), (Err("denied".into()), 1));
        let done = NOW.run(|attempt| if attempt < 3 { Err(Next::Retry("busy", None)) } else { Ok(attempt) });
        assert_eq!(done, Ok(3));
    }

    #[test]
    fn azure_cores_default_statuses() {
        let retried: Vec<u16> = (400..600).filter(|s| transient(*s)).collect();
        assert_eq!(retried, [408, 429, 500, 502, 503, 504]);
    }
}
