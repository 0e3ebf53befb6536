//! One price for the fleet: at each window's end every replica publishes its demand
//! sample; one replica, elected with `SET NX`, waits briefly for the others' samples,
//! clears the next price from the merged sample of the recent windows and publishes
//! it; the others read it. A replica that cannot get the price in time keeps the one
//! it admitted at (never its own re-clear, which sees only its share of the demand).

use crate::demand::{decode, encode, merge, ReplicaWindow};
use crate::ledger::RedisLedger;
use crate::stats::Counters;
use clear_alloc::online::ClosedWindow;
use std::collections::HashMap;
use std::time::{Duration, Instant};

impl RedisLedger {
    /// The price epoch `next` admits at, after this replica's epoch `epoch` closed.
    pub(crate) fn fleet_price(&self, closed: &ClosedWindow<'_>, epoch: u64, next: u64) -> f64 {
        let ttl = self.ttl_millis();
        let sample = encode(closed.arrivals(), closed.sample());
        let elected = self.link.call(&self.counters, "publish demand", |c| {
            redis::pipe()
                .cmd("HSET")
                .arg(self.keys.demand(epoch))
                .arg(&self.replica)
                .arg(sample.as_slice())
                .ignore()
                .cmd("PEXPIRE")
                .arg(self.keys.demand(epoch))
                .arg(ttl)
                .ignore()
                .cmd("SET")
                .arg(self.keys.clearer(epoch))
                .arg(&self.replica)
                .arg("NX")
                .arg("PX")
                .arg(ttl)
                .query::<(Option<String>,)>(c)
        });
        let price = match elected {
            Some((Some(_),)) => self.clear_for_fleet(closed, epoch, next),
            Some((None,)) => self.read_price(next),
            None => None,
        };
        price.unwrap_or_else(|| {
            Counters::add(&self.counters.prices_missed, 1);
            tracing::warn!(
                namespace = %self.namespace,
                epoch = next,
                "redis ledger: no fleet price for this window in time; keeping the last one"
            );
            closed.price()
        })
    }

    /// The elected replica's part: wait for the samples of every replica that leased
    /// in `epoch` (at most `price_wait`), merge the history, clear, publish.
    fn clear_for_fleet(&self, closed: &ClosedWindow<'_>, epoch: u64, next: u64) -> Option<f64> {
        let deadline = Instant::now() + self.price_wait;
        loop {
            let (published, members) = self.link.call(&self.counters, "count samples", |c| {
                redis::pipe()
                    .cmd("HLEN")
                    .arg(self.keys.demand(epoch))
                    .cmd("SCARD")
                    .arg(self.keys.members(epoch))
                    .query::<(u64, u64)>(c)
            })?;
            if published >= members || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let history = closed.history_windows() as u64;
        let epochs: Vec<u64> = (epoch.saturating_sub(history - 1)..=epoch).collect();
        let hashes = self.link.call(&self.counters, "read samples", |c| {
            let mut pipe = redis::pipe();
            for &e in &epochs {
                pipe.cmd("HGETALL").arg(self.keys.demand(e));
            }
            pipe.query::<Vec<HashMap<String, Vec<u8>>>>(c)
        })?;
        let windows: Vec<Vec<ReplicaWindow>> = hashes
            .into_iter()
            .filter(|replicas| !replicas.is_empty())
            .map(|replicas| {
                replicas
                    .into_iter()
                    .filter_map(|(replica, bytes)| match decode(&bytes) {
                        Ok((arrivals, sample)) => Some(ReplicaWindow { arrivals, sample }),
                        Err(reason) => {
                            tracing::warn!(
                                namespace = %self.namespace,
                                replica = %replica,
                                "redis ledger: skipping a demand sample: {reason}"
                            );
                            None
                        }
                    })
                    .collect()
            })
            .collect();
        let price = closed.clear(&merge(&windows));
        self.link.call(&self.counters, "publish price", |c| {
            redis::cmd("SET")
                .arg(self.keys.price(next))
                .arg(price.to_string())
                .arg("PX")
                .arg(self.ttl_millis())
                .query::<()>(c)
        })?;
        Counters::add(&self.counters.prices_cleared, 1);
        Some(price)
    }

    /// The others' part: poll for the published price, backing off from 1 ms to 16 ms,
    /// for at most twice the clearing wait plus one I/O timeout.
    fn read_price(&self, next: u64) -> Option<f64> {
        let deadline = Instant::now() + 2 * self.price_wait + self.io_timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            let found = self.link.call(&self.counters, "read price", |c| {
                redis::cmd("GET")
                    .arg(self.keys.price(next))
                    .query::<Option<String>>(c)
            })?;
            if let Some(text) = found {
                let price = text
                    .parse::<f64>()
                    .ok()
                    .filter(|p| p.is_finite() && *p >= 0.0);
                if price.is_some() {
                    Counters::add(&self.counters.prices_read, 1);
                } else {
                    tracing::warn!(namespace = %self.namespace, "redis ledger: ignoring price {text:?}");
                }
                return price;
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(16));
        }
    }
}
