"""The job store's Lua scripts, each run atomically by Redis (``worker.store.jobs`` names their keys).

RECORD   KEYS job, results, done; ARGV stamp, then (index, "ok"|"error", outcome JSON) triples.
         Stores each outcome with HSETNX and moves a counter only for a first answer, then sets
         the status (running, or done when every index is answered). Returns how many were new,
         -1 for an unknown job, -2 once it is cancelled, 0 once it is done.
CLAIM    KEYS job, results; ARGV count. Hands out up to ``count`` more chunk ranges after the
         job's ``dispatched`` cursor, skipping ranges whose every index is answered already, and
         moves the cursor past them. Returns a flat list start1, stop1, start2, stop2 ...
CANCEL   KEYS job, done; ARGV stamp. Cancels a queued or running job; returns the status after.
WEBHOOK_DUE  KEYS job; ARGV now, next, delivery id (epoch seconds, id for a first delivery).
         For an ended job with a callback_url whose webhook is neither delivered nor failed and
         due (no ``webhook_next_at`` yet, or it has passed): marks it pending, keeps the delivery
         id of its first call, holds it until ``next`` and returns 1, telling the caller to queue
         the delivery task. Otherwise 0: exactly one caller queues each attempt.
WEBHOOK_END  KEYS job; ARGV now, webhook status, then field/value pairs to set. Records one
         delivery attempt (attempts + 1, the first attempt's time) unless the job is gone or the
         webhook is already delivered (then 0).
"""

from __future__ import annotations

RECORD = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'cancelled' then return -2 end
if status == 'done' then return 0 end
local ttl = redis.call('PTTL', KEYS[1])
local added = 0
for i = 2, #ARGV, 3 do
  if redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 2]) == 1 then
    added = added + 1
    redis.call('HINCRBY', KEYS[1], ARGV[i + 1] == 'ok' and 'succeeded' or 'failed', 1)
  end
end
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
if added > 0 then
  local job = redis.call('HMGET', KEYS[1], 'succeeded', 'failed', 'total')
  local processed = tonumber(job[1] or 0) + tonumber(job[2] or 0)
  if processed >= tonumber(job[3]) then
    redis.call('HSET', KEYS[1], 'status', 'done', 'updated_at', ARGV[1], 'finished_at', ARGV[1])
    redis.call('RPUSH', KEYS[3], 'done')
    if ttl > 0 then redis.call('PEXPIRE', KEYS[3], ttl) end
  else
    redis.call('HSET', KEYS[1], 'status', 'running', 'updated_at', ARGV[1])
  end
end
return added
"""

CLAIM = """
local job = redis.call('HMGET', KEYS[1], 'status', 'total', 'chunk_size', 'dispatched')
if not job[1] or job[1] == 'done' or job[1] == 'cancelled' then return {} end
local total, size = tonumber(job[2]), tonumber(job[3])
local pos = tonumber(job[4] or job[2])  -- a job stored before chained chunks was queued whole
local ranges = {}
while #ranges < 2 * tonumber(ARGV[1]) and pos < total do
  local stop = math.min(pos + size, total)
  for i = pos, stop - 1 do
    if redis.call('HEXISTS', KEYS[2], i) == 0 then
      table.insert(ranges, pos)
      table.insert(ranges, stop)
      break
    end
  end
  pos = stop
end
redis.call('HSET', KEYS[1], 'dispatched', pos)
return ranges
"""

CANCEL = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return nil end
if status == 'queued' or status == 'running' then
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'updated_at', ARGV[1], 'finished_at', ARGV[1])
  redis.call('RPUSH', KEYS[2], 'cancelled')
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
  return 'cancelled'
end
return status
"""

WEBHOOK_DUE = """
local job = redis.call('HMGET', KEYS[1], 'status', 'callback_url', 'webhook_status', 'webhook_next_at')
if not job[2] or (job[1] ~= 'done' and job[1] ~= 'cancelled') then return 0 end
if job[3] == 'delivered' or job[3] == 'failed' then return 0 end
if job[4] and tonumber(job[4]) > tonumber(ARGV[1]) then return 0 end
redis.call('HSETNX', KEYS[1], 'webhook_id', ARGV[3])
redis.call('HSET', KEYS[1], 'webhook_status', 'pending', 'webhook_next_at', ARGV[2])
return 1
"""

WEBHOOK_END = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HGET', KEYS[1], 'webhook_status') == 'delivered' then return 0 end
redis.call('HINCRBY', KEYS[1], 'webhook_attempts', 1)
redis.call('HSETNX', KEYS[1], 'webhook_first_at', ARGV[1])
redis.call('HSET', KEYS[1], 'webhook_status', ARGV[2], unpack(ARGV, 3))
return 1
"""
