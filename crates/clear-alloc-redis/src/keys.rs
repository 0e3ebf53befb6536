//! The key layout of one namespace. Every key of a namespace starts with
//! `clear-alloc:{NAME}:`, so several budgets (one per tenant, say) share one Redis and
//! one namespace's keys can be listed with `SCAN MATCH clear-alloc:{NAME}:*`. The braces
//! are a Redis Cluster hash tag: a namespace's keys live on one shard, as the lease
//! script needs.

/// The names of a namespace's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    /// The keys of namespace `name` (validated by the builder).
    pub(crate) fn new(name: &str) -> Keys {
        Keys {
            prefix: format!("clear-alloc:{{{name}}}:"),
        }
    }

    /// The epoch from which budgets may be created: written by the first lease after
    /// the namespace's state was lost (see the restart rule in the crate docs).
    pub(crate) fn generation(&self) -> String {
        format!("{}gen", self.prefix)
    }

    /// Tokens of epoch `epoch`'s budget not leased out (an integer).
    pub(crate) fn budget(&self, epoch: u64) -> String {
        format!("{}budget:{epoch}", self.prefix)
    }

    /// The replicas that leased from epoch `epoch` (a set).
    pub(crate) fn members(&self, epoch: u64) -> String {
        format!("{}members:{epoch}", self.prefix)
    }

    /// Each replica's demand sample of epoch `epoch` (a hash: replica → sample).
    pub(crate) fn demand(&self, epoch: u64) -> String {
        format!("{}demand:{epoch}", self.prefix)
    }

    /// The replica elected (by `SET NX`) to clear the price after epoch `epoch`.
    pub(crate) fn clearer(&self, epoch: u64) -> String {
        format!("{}clearer:{epoch}", self.prefix)
    }

    /// The price epoch `epoch` admits at (a float, as text).
    pub(crate) fn price(&self, epoch: u64) -> String {
        format!("{}price:{epoch}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_namespace_shares_its_hash_tagged_prefix() {
        let keys = Keys::new("tenant-a");
        assert_eq!(keys.budget(17), "clear-alloc:{tenant-a}:budget:17");
        assert_eq!(keys.generation(), "clear-alloc:{tenant-a}:gen");
        for key in [
            keys.members(3),
            keys.demand(3),
            keys.clearer(3),
            keys.price(4),
        ] {
            assert!(key.starts_with("clear-alloc:{tenant-a}:"), "{key}");
        }
        assert_ne!(Keys::new("a").budget(1), Keys::new("b").budget(1));
    }
}
