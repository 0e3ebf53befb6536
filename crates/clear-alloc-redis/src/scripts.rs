//! The two Lua scripts that touch a window budget. Redis runs a script atomically, so
//! a lease can never grant more than what is left, however many replicas ask at once.

use redis::Script;

/// Leases up to `chunk` tokens of an epoch's budget, and registers the replica as a
/// member of the epoch (whose demand sample the price clearing waits for).
///
/// KEYS: budget, generation, members. ARGV: epoch, budget, chunk, ttl (ms), replica,
/// needed.
///
/// The grant is at most what is left, and at most a fair share of it — half of what
/// is left divided among the epoch's members — unless a waiting request needs more
/// (`needed`), so that chunks shrink as the budget drains and few tokens are stranded
/// on one replica while the others lack them.
///
/// Returns `{granted, left}`, or `{0, -1}` when the namespace had no generation (Redis
/// lost its state or never had it: this epoch becomes the generation and gets no
/// budget), or `{0, -2}` when the epoch's budget is missing and the epoch is not after
/// the generation (its budget was lost with Redis's state: never re-created in full).
const LEASE: &str = r#"
redis.call('SADD', KEYS[3], ARGV[5])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
local gen = redis.call('GET', KEYS[2])
if not gen then
  redis.call('SET', KEYS[2], ARGV[1])
  return {0, -1}
end
local left = redis.call('GET', KEYS[1])
if not left then
  if tonumber(ARGV[1]) <= tonumber(gen) then
    return {0, -2}
  end
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[4])
  left = tonumber(ARGV[2])
else
  left = tonumber(left)
end
local fair = math.floor(left / (2 * redis.call('SCARD', KEYS[3])))
local grant = math.min(left, tonumber(ARGV[3]), math.max(fair, tonumber(ARGV[6]), 1))
if grant > 0 then
  redis.call('DECRBY', KEYS[1], grant)
end
return {grant, left - grant}
"#;

/// Returns unused tokens to an epoch's budget if the budget still exists (a budget
/// lost with Redis's state is not re-created by a return).
///
/// KEYS: budget. ARGV: tokens. Returns the tokens left after the return, or -1.
const RELEASE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('INCRBY', KEYS[1], ARGV[1])
end
return -1
"#;

/// What a lease script answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeaseReply {
    /// Tokens granted and tokens the epoch has left after the grant.
    Granted { tokens: u64, left: u64 },
    /// The namespace had lost its state; this epoch is unfunded.
    Restarted,
    /// The epoch's budget was lost with Redis's state; it stays unfunded.
    Lost,
}

impl LeaseReply {
    pub(crate) fn decode((granted, left): (i64, i64)) -> LeaseReply {
        match left {
            -1 => LeaseReply::Restarted,
            l if l < 0 => LeaseReply::Lost,
            l => LeaseReply::Granted {
                tokens: granted.max(0) as u64,
                left: l as u64,
            },
        }
    }
}

/// The compiled scripts (their SHA1s; `invoke` loads them again after a restart).
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) lease: Script,
    pub(crate) release: Script,
}

impl Scripts {
    pub(crate) fn new() -> Scripts {
        Scripts {
            lease: Script::new(LEASE),
            release: Script::new(RELEASE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_decode_into_grants_and_the_two_refusals() {
        assert_eq!(
            LeaseReply::decode((500, 1_500)),
            LeaseReply::Granted {
                tokens: 500,
                left: 1_500
            }
        );
        assert_eq!(LeaseReply::decode((0, -1)), LeaseReply::Restarted);
        assert_eq!(LeaseReply::decode((0, -2)), LeaseReply::Lost);
    }
}
