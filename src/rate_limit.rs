//! Request rate limits per caller: per master token, per end user (all their user tokens
//! share one budget), and per client address for callers without a valid token. Each
//! replica counts on its own, so with N replicas a caller may reach N times the rate.

use std::{
    convert::Infallible,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    num::NonZeroU32,
    sync::{Arc, Weak},
    time::Duration,
};

use axum::{extract::FromRequestParts, http::request::Parts};
use governor::{DefaultKeyedRateLimiter, Quota, clock::Clock};

use crate::{auth::Principal, config::RateLimit, error::Error};

/// How often the limiter forgets callers whose budget is full again, so the table holds
/// only recent callers however many addresses and tokens come and go.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The address a connection comes from, set by the server on every request.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub IpAddr);

impl<S: Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // Absent only when the router runs outside the server (in-process tests); such
        // callers share one budget.
        Ok(parts.extensions.get::<ClientAddr>().copied().unwrap_or(ClientAddr(IpAddr::V4(Ipv4Addr::UNSPECIFIED))))
    }
}

/// Whose budget a request spends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    MasterToken(uuid::Uuid),
    User(uuid::Uuid),
    Address(IpAddr),
}

impl Key {
    fn of(caller: Option<&Principal>, client: ClientAddr) -> Self {
        match caller {
            Some(Principal::Master(scope)) => Key::MasterToken(scope.token_id().0),
            Some(Principal::User(scope)) => Key::User(scope.user_id().0),
            Some(Principal::Anonymous) | None => Key::Address(network_of(client.0)),
        }
    }
}

/// An IPv6 client usually holds a whole /64, so it is counted as one address.
fn network_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !((1u128 << 64) - 1))),
        },
    }
}

/// Admits or refuses requests; cheap to clone. Disabled, it admits everything.
#[derive(Clone)]
pub struct RateLimiter {
    limiter: Option<Arc<DefaultKeyedRateLimiter<Key>>>,
}

impl RateLimiter {
    /// A limiter for `limit` (`None`: no limits). Within a Tokio runtime it also starts
    /// the pruning that keeps its table small; that task ends with the limiter.
    pub fn new(limit: Option<RateLimit>) -> Self {
        let Some(limit) = limit else {
            return Self { limiter: None };
        };
        let per_second = NonZeroU32::new(limit.per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN);
        let limiter = Arc::new(DefaultKeyedRateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)));
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(prune_while_alive(Arc::downgrade(&limiter)));
        }
        Self { limiter: Some(limiter) }
    }

    /// Spends one request of the caller's budget, or says how long to wait. `caller` is
    /// `None` when the token was refused: such requests spend the client address's budget,
    /// so guessing tokens is limited too.
    pub fn admit(&self, caller: Option<&Principal>, client: ClientAddr) -> Result<(), Error> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter.check_key(&Key::of(caller, client)).map_err(|not_until| {
            let wait = not_until.wait_time_from(limiter.clock().now());
            let kind = caller.map_or("refused token", Principal::kind);
            tracing::debug!(caller = kind, wait_ms = wait.as_millis() as u64, "rate limited");
            // Whole seconds, rounded up, so a client that waits as told is admitted.
            Error::RateLimited { retry_after_secs: (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1) }
        })
    }

    /// Forgets callers whose budget has filled up again (they are indistinguishable
    /// from new ones).
    fn prune(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.limiter.as_ref().map_or(0, |limiter| limiter.len())
    }
}

async fn prune_while_alive(limiter: Weak<DefaultKeyedRateLimiter<Key>>) {
    let mut ticks = tokio::time::interval(PRUNE_EVERY);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(limiter) = limiter.upgrade() else { return };
        RateLimiter { limiter: Some(limiter) }.prune();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(text: &str) -> ClientAddr {
        ClientAddr(text.parse().unwrap())
    }

    #[test]
    fn a_caller_past_its_burst_is_told_to_retry_in_whole_seconds() {
        let limiter = RateLimiter::new(Some(RateLimit { per_second: 1, burst: 2 }));
        let anonymous = Some(&Principal::Anonymous);
        assert!(limiter.admit(anonymous, client("192.0.2.1")).is_ok());
        assert!(limiter.admit(anonymous, client("192.0.2.1")).is_ok());
        let refused = limiter.admit(anonymous, client("192.0.2.1")).unwrap_err();
        assert!(matches!(refused, Error::RateLimited { retry_after_secs: 1 }), "{refused:?}");
        assert!(limiter.admit(anonymous, client("192.0.2.2")).is_ok(), "another address has its own budget");
    }

    #[test]
    fn addresses_in_one_ipv6_64_share_a_budget() {
        let limiter = RateLimiter::new(Some(RateLimit { per_second: 1, burst: 1 }));
        assert!(limiter.admit(None, client("2001:db8::1")).is_ok());
        assert!(limiter.admit(None, client("2001:db8::ffff:2")).is_err());
        assert!(limiter.admit(None, client("2001:db8:0:1::1")).is_ok());
    }

    #[test]
    fn a_disabled_limiter_admits_everything() {
        let limiter = RateLimiter::new(None);
        for _ in 0..1000 {
            assert!(limiter.admit(None, client("192.0.2.1")).is_ok());
        }
    }

    #[test]
    fn pruning_forgets_callers_whose_budget_is_full_again() {
        let limiter = RateLimiter::new(Some(RateLimit { per_second: 1000, burst: 1 }));
        for last in 0..100u8 {
            limiter.admit(None, client(&format!("192.0.2.{last}"))).unwrap();
        }
        assert_eq!(limiter.tracked(), 100);
        // A thousandth of a second refills each budget; wait far longer.
        std::thread::sleep(Duration::from_millis(200));
        limiter.prune();
        assert_eq!(limiter.tracked(), 0);
    }
}
