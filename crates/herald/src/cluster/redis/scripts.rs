//! The Lua scripts the Redis bus runs (by SHA, loaded again when Redis lost them).

use super::Inner;

/// The start both topic scripts share: the next offset, the epoch (a new one, and an
/// empty history, when Redis lost the meta hash), the history entry and the expiries;
/// `o` and `e` are then the message's position. A macro: `concat!` takes literals.
macro_rules! stamp_topic {
    () => {
        r#"
local o = redis.call('HINCRBY', KEYS[2], 'o', 1)
local e = redis.call('HGET', KEYS[2], 'e')
if not e then
  e = ARGV[4]
  redis.call('HSET', KEYS[2], 'e', e)
  redis.call('DEL', KEYS[1])
end
local ttl = tonumber(ARGV[5])
if tonumber(ARGV[3]) > 0 then
  redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[3], o .. '-0', 'p', ARGV[2])
  if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
end
if ttl > 0 then redis.call('EXPIRE', KEYS[2], ttl) end
"#
    };
}

/// KEYS: history stream, meta hash. ARGV: channel, payload, history size, a fresh
/// epoch, ttl seconds. Returns {offset, epoch}.
pub(super) const TOPIC_SCRIPT: &str = concat!(
    stamp_topic!(),
    r#"redis.call('PUBLISH', ARGV[1], o .. ' ' .. e .. ' ' .. ARGV[2])
return {o, e}
"#
);

/// The topic script for a Redis Cluster: the same, published on the destination's
/// sharded channel (`SPUBLISH`, in the keys' slot), and as a classic copy on ARGV[6]
/// when it is not empty (a wildcard somewhere matches the destination).
pub(super) const CLUSTER_TOPIC_SCRIPT: &str = concat!(
    stamp_topic!(),
    r#"local msg = o .. ' ' .. e .. ' ' .. ARGV[2]
redis.call('SPUBLISH', ARGV[1], msg)
if ARGV[6] ~= '' then redis.call('PUBLISH', ARGV[6], msg) end
return {o, e}
"#
);

/// The queue script for a Redis Cluster: the registry set lives in another slot, so
/// the writer adds to it with a command of its own. KEYS: queue stream. ARGV:
/// payload, capacity. Returns the entry id.
pub(super) const CLUSTER_QUEUE_SCRIPT: &str = r#"
redis.pcall('XGROUP', 'CREATE', KEYS[1], 'herald', '0', 'MKSTREAM')
return redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], '*', 'p', ARGV[1])
"#;

/// KEYS: queue stream, queue registry set. ARGV: payload, capacity, routing key.
/// Returns the entry id.
pub(super) const QUEUE_SCRIPT: &str = r#"
redis.pcall('XGROUP', 'CREATE', KEYS[1], 'herald', '0', 'MKSTREAM')
redis.call('SADD', KEYS[2], ARGV[3])
return redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], '*', 'p', ARGV[1])
"#;

/// KEYS: queue stream. ARGV: entry id, this node's consumer, capacity, times it was
/// given back. Re-adds an entry this node holds as a new one (any node's next
/// XREADGROUP reads it) with that count in field `r`, and removes the old; nothing
/// when another consumer holds it now. Returns 1 if moved.
pub(super) const HAND_BACK_SCRIPT: &str = r#"
local held = redis.call('XPENDING', KEYS[1], 'herald', ARGV[1], ARGV[1], 1, ARGV[2])
if #held == 0 then return 0 end
local e = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
redis.call('XACK', KEYS[1], 'herald', ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
if #e == 0 then return 0 end
local fields = {}
local f = e[1][2]
for i = 1, #f, 2 do
  if f[i] ~= 'r' then
    fields[#fields + 1] = f[i]
    fields[#fields + 1] = f[i + 1]
  end
end
fields[#fields + 1] = 'r'
fields[#fields + 1] = ARGV[4]
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[3], '*', unpack(fields))
return 1
"#;

/// Every script, loaded again after a Redis restart emptied its script cache.
pub(super) const SCRIPTS: [&str; 7] = [
    TOPIC_SCRIPT,
    QUEUE_SCRIPT,
    CLUSTER_TOPIC_SCRIPT,
    CLUSTER_QUEUE_SCRIPT,
    HAND_BACK_SCRIPT,
    JOIN_SCRIPT,
    LIST_SCRIPT,
];

/// KEYS: hash, sorted set. ARGV: ttl ms, then member, info pairs. Stamps each member
/// with now + ttl; both keys expire when no node refreshes anything for a ttl.
pub(super) const JOIN_SCRIPT: &str = r#"
local t = redis.call('TIME')
local ttl = tonumber(ARGV[1])
local exp = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + ttl
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[2], exp, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return #ARGV
"#;

/// KEYS: hash, sorted set. Drops expired members, returns HGETALL.
pub(super) const LIST_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for i = 1, #dead, 500 do
  local chunk = {}
  for j = i, math.min(i + 499, #dead) do chunk[#chunk + 1] = dead[j] end
  redis.call('HDEL', KEYS[1], unpack(chunk))
  redis.call('ZREM', KEYS[2], unpack(chunk))
end
return redis.call('HGETALL', KEYS[1])
"#;

/// Every script's SHA, as `EVALSHA` takes it.
#[derive(Debug)]
pub(super) struct Scripts {
    pub(super) topic: String,
    pub(super) queue: String,
    pub(super) cluster_topic: String,
    pub(super) cluster_queue: String,
    pub(super) hand_back: String,
    pub(super) join: String,
    pub(super) list: String,
}

impl Scripts {
    pub(super) fn new() -> Scripts {
        let sha = |s: &str| redis::Script::new(s).get_hash().to_owned();
        Scripts {
            topic: sha(TOPIC_SCRIPT),
            queue: sha(QUEUE_SCRIPT),
            cluster_topic: sha(CLUSTER_TOPIC_SCRIPT),
            cluster_queue: sha(CLUSTER_QUEUE_SCRIPT),
            hand_back: sha(HAND_BACK_SCRIPT),
            join: sha(JOIN_SCRIPT),
            list: sha(LIST_SCRIPT),
        }
    }
}

impl Inner {
    /// Loads every script; on a cluster, one `SCRIPT LOAD` at a time, which the
    /// cluster connection sends to every master.
    pub(super) async fn load_scripts(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn();
        if conn.is_cluster() {
            for script in SCRIPTS {
                let _: redis::Value = redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(script)
                    .query_async(&mut conn)
                    .await?;
            }
            return Ok(());
        }
        let mut load = redis::pipe();
        for script in SCRIPTS {
            load.cmd("SCRIPT").arg("LOAD").arg(script).ignore();
        }
        load.query_async(&mut conn).await
    }
}
