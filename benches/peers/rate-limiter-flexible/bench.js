// rate-limiter-flexible (RateLimiterRedis: a fixed window, one ioredis connection) under the
// load `benches/benches/ratelimit.rs` puts on redis-patterns-ratelimit: CALLERS concurrent
// callers, 1,000 identities visited in turn, 100 checks per identity per second, for SECONDS
// seconds against the server at 127.0.0.1:PORT. Prints one JSON line: checks, denied, rate.
//
//   npm ci && PORT=6379 SECONDS=10 CALLERS=50 node bench.js
const Redis = require('ioredis');
const { RateLimiterRedis } = require('rate-limiter-flexible');

const port = parseInt(process.env.PORT || '6379', 10);
const seconds = parseFloat(process.env.SECONDS || '10');
const callers = parseInt(process.env.CALLERS || '50', 10);
const IDENTITIES = 1000;

const client = new Redis({ host: '127.0.0.1', port, enableOfflineQueue: false });
const limiter = new RateLimiterRedis({
  storeClient: client,
  keyPrefix: `peers-rflex-${process.pid}-${Date.now()}`,
  points: 100,
  duration: 1,
});

client.on('error', (e) => {
  console.error(`redis: ${e.message}`);
  process.exit(2);
});

client.on('ready', async () => {
  let checks = 0;
  let denied = 0;
  const end = Date.now() + seconds * 1000;
  async function caller(c) {
    // Like the Rust bench's tasks: each caller walks the identities from its own offset.
    let i = c * Math.ceil(IDENTITIES / callers);
    while (Date.now() < end) {
      try {
        await limiter.consume(`user:${i % IDENTITIES}`);
      } catch (e) {
        if (e instanceof Error) throw e; // a Redis error, not a denial
        denied += 1;
      }
      i += 1;
      checks += 1;
    }
  }
  const started = process.hrtime.bigint();
  await Promise.all(Array.from({ length: callers }, (_, c) => caller(c)));
  const took = Number(process.hrtime.bigint() - started) / 1e9;
  console.log(JSON.stringify({ checks, denied, seconds: took, per_second: Math.round(checks / took) }));
  client.disconnect();
});
