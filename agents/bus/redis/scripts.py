"""The Redis broker's Lua script: one atomic step per batch of durable events (see ``outbox``).

Keys are built from the deployment's prefix (ARGV), so runwatch needs a single Redis (or a
primary with replicas), not Redis Cluster.
"""

from __future__ import annotations

from runwatch.agents.events import LIFECYCLE_TYPES

#: ARGV: prefix, stream MAXLEN, feed MAXLEN, TTL of a live run's stream, TTL once finished, a
#: candidate feed epoch; then (run, seq, type, data) per event. Returns the feed's epoch.
PUBLISH = (
    "local life = {"
    + ", ".join(f"['{t}'] = true" for t in sorted(LIFECYCLE_TYPES))
    + "}\n"
    + """
local p, maxlen, feedlen, live_ttl, done_ttl, epoch = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local feed, fseq = p .. 'feed', p .. 'feed:seq'
local feed_epoch = redis.call('GET', p .. 'feed:epoch')
if not feed_epoch then
  redis.call('SET', p .. 'feed:epoch', epoch)
  feed_epoch = epoch
end
local ttl = {}
for i = 7, #ARGV, 4 do
  local run, seq, typ, data = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local key = p .. 'log:' .. run
  -- An entry id must grow: a position sent before (a retried batch) is not added, nor published, twice.
  local added = redis.pcall('XADD', key, 'MAXLEN', '~', maxlen, seq .. '-0', 't', typ, 'd', data)
  if type(added) ~= 'table' then
    redis.call('PUBLISH', p .. 'ch:' .. run, seq .. ' ' .. typ .. ' ' .. data)
    if typ == 'run.finished' then ttl[key] = done_ttl elseif not ttl[key] then ttl[key] = live_ttl end
    if life[typ] then
      local pos = redis.call('INCR', fseq)
      local fdata = '{"feed":' .. pos .. ',' .. string.sub(data, 2)
      local ok = redis.pcall('XADD', feed, 'MAXLEN', '~', feedlen, pos .. '-0', 'r', run, 't', typ, 'd', fdata)
      if type(ok) == 'table' then
        -- The counter fell behind the feed (it was evicted or reset): continue after the feed's last entry.
        local last = redis.call('XREVRANGE', feed, '+', '-', 'COUNT', 1)
        pos = tonumber(string.match(last[1][1], '^(%d+)')) + 1
        redis.call('SET', fseq, pos)
        fdata = '{"feed":' .. pos .. ',' .. string.sub(data, 2)
        redis.call('XADD', feed, 'MAXLEN', '~', feedlen, pos .. '-0', 'r', run, 't', typ, 'd', fdata)
      end
      redis.call('PUBLISH', p .. 'feed:ch', pos .. ' ' .. feed_epoch .. ' ' .. typ .. ' ' .. run .. ' ' .. fdata)
    end
  end
end
for key, seconds in pairs(ttl) do redis.call('EXPIRE', key, seconds) end
return feed_epoch
"""
)
