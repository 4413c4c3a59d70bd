#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn one_pool(mode: Mode, capacity: u64, refill: u64) -> (RateLimiter, PoolId) {
    let mut rl = RateLimiter::new(mode);
    let p = rl.add_pool(Pool { name: "p", capacity, refill_per_second: refill });
    (rl, p)
}

#[test]
fn deribit_non_matching_bursts_100_then_refills_20_per_second() {
    let t0 = Instant::now();
    let (mut rl, pools) = RateLimiter::deribit(DeribitLimits::default(), Mode::Refuse);
    let (p, cost) = pools.classify("public/ticker");
    assert_eq!((p, cost), (pools.non_matching, 500));
    assert!((0..100).all(|_| rl.acquire(t0, p, cost) == Acquire::Ready));
    assert_eq!(
        rl.acquire(t0, p, cost),
        Acquire::Refused(Refusal::Empty { pool: "deribit non-matching", retry_at: Some(t0 + ms(50)) })
    );
    assert_eq!(
        rl.acquire(t0 + ms(49), p, cost),
        Acquire::Refused(Refusal::Empty { pool: "deribit non-matching", retry_at: Some(t0 + ms(50)) })
    );
    assert_eq!(rl.acquire(t0 + ms(50), p, cost), Acquire::Ready);
    // A full second refills 20.
    let t1 = t0 + ms(1_050);
    assert!((0..20).all(|_| rl.acquire(t1, p, cost) == Acquire::Ready));
    assert!(matches!(rl.acquire(t1, p, cost), Acquire::Refused(_)));
    assert_eq!(rl.stats().granted, 121);
    assert_eq!(rl.stats().refusals, 3);
}

#[test]
fn deribit_pools_are_separate() {
    let t0 = Instant::now();
    let (mut rl, pools) = RateLimiter::deribit(DeribitLimits::default(), Mode::Refuse);
    assert_eq!(pools.classify("/private/buy"), (pools.matching, 1));
    assert_eq!(pools.classify("private/cancel_all"), (pools.matching, 1));
    assert_eq!(pools.classify("public/subscribe"), (pools.subscribe, 3_000));
    assert_eq!(pools.classify("public/unsubscribe"), (pools.subscribe, 3_000), "as the simulator charges it");
    let (s, sc) = pools.classify("private/subscribe");
    assert!((0..10).all(|_| rl.acquire(t0, s, sc) == Acquire::Ready), "subscribe bursts 10");
    assert!(matches!(rl.acquire(t0, s, sc), Acquire::Refused(_)));
    let (m, mc) = pools.classify("private/sell");
    assert!((0..20).all(|_| rl.acquire(t0, m, mc) == Acquire::Ready), "matching engine bursts 20");
    assert!(matches!(rl.acquire(t0, m, mc), Acquire::Refused(_)));
    assert_eq!(rl.acquire(t0 + ms(200), m, mc), Acquire::Ready, "5/s: one every 200 ms");
    let (n, nc) = pools.classify("public/get_time");
    assert_eq!(rl.acquire(t0, n, nc), Acquire::Ready, "untouched by the others");
    assert_eq!(rl.available(t0, n), 49_500);
}

#[test]
fn wait_mode_reserves_in_order_and_bounds_the_wait() {
    let t0 = Instant::now();
    let (mut rl, p) = one_pool(Mode::Wait { max_wait: ms(300) }, 2, 10); // 2 burst, one every 100 ms
    assert_eq!(rl.acquire(t0, p, 1), Acquire::Ready);
    assert_eq!(rl.acquire(t0, p, 1), Acquire::Ready);
    assert_eq!(rl.acquire(t0, p, 1), Acquire::Wait(t0 + ms(100)));
    assert_eq!(rl.acquire(t0, p, 1), Acquire::Wait(t0 + ms(200)), "queued behind the first wait");
    assert_eq!(rl.acquire(t0, p, 1), Acquire::Wait(t0 + ms(300)));
    assert_eq!(
        rl.acquire(t0, p, 1),
        Acquire::Refused(Refusal::WaitTooLong { pool: "p", max_wait: ms(300), retry_at: Some(t0 + ms(400)) })
    );
    let st = *rl.stats();
    assert_eq!((st.granted, st.waits, st.refusals), (2, 3, 1));
    assert_eq!(st.total_wait, ms(600));
    assert_eq!(st.longest_wait, ms(300));
    // A waiter that gives up returns its credits.
    rl.refund(p, 1);
    assert_eq!(rl.acquire(t0, p, 1), Acquire::Wait(t0 + ms(300)));
}

/// Whatever the pattern of calls, over a long run no more than capacity + rate × time is
/// granted (to within one request), and in wait mode every grant's send time respects it.
#[test]
fn the_sustained_rate_is_never_exceeded() {
    let t0 = Instant::now();
    for mode in [Mode::Refuse, Mode::Wait { max_wait: ms(10_000) }] {
        let (mut rl, p) = one_pool(mode, 50_000, 10_000);
        let mut sends = Vec::new();
        let mut now = t0;
        while now < t0 + ms(10_000) {
            match rl.acquire(now, p, 500) {
                Acquire::Ready => sends.push(now),
                Acquire::Wait(at) => {
                    sends.push(at);
                    now = at;
                }
                Acquire::Refused(_) => now += ms(7),
            }
        }
        // Any window [a, a + w] holds at most 100 + 20 × w requests.
        for (i, &a) in sends.iter().enumerate() {
            let w = ms(1_000);
            let n = sends[i..].iter().take_while(|&&t| t <= a + w).count();
            assert!(n <= 100 + 20 + 1, "{mode:?}: {n} sends in a second");
        }
        let total = sends.len();
        assert!((100 + 199..=100 + 201).contains(&total), "{mode:?}: {total} in 10 s");
    }
}

#[test]
fn extreme_settings_never_panic() {
    let t0 = Instant::now();
    let (mut rl, p) = one_pool(Mode::Wait { max_wait: Duration::MAX }, 5, 0);
    assert!((0..5).all(|_| rl.acquire(t0, p, 1) == Acquire::Ready));
    assert_eq!(
        rl.acquire(t0 + ms(1_000_000), p, 1),
        Acquire::Refused(Refusal::WaitTooLong { pool: "p", max_wait: Duration::MAX, retry_at: None }),
        "no refill: never"
    );
    assert_eq!(rl.acquire(t0, p, 6), Acquire::Refused(Refusal::TooCostly { pool: "p", cost: 6, capacity: 5 }));
    let (mut big, q) = one_pool(Mode::Refuse, u64::MAX, u64::MAX);
    assert_eq!(big.acquire(t0, q, u64::MAX), Acquire::Ready);
    assert_eq!(big.acquire(t0 + Duration::from_secs(86_400 * 365 * 100), q, u64::MAX), Acquire::Ready);
    assert_eq!(big.available(t0, q), 0, "a clock going backwards neither refills nor panics");
    assert_eq!(rl.acquire(t0, PoolId(9), 1), Acquire::Refused(Refusal::UnknownPool));
    let text = Refusal::TooCostly { pool: "p", cost: 6, capacity: 5 }.to_string();
    assert_eq!(text, "rate limit: a request costing 6 credits can never fit the p pool of 5");
}

#[test]
fn a_charge_goes_into_debt_and_the_next_request_waits_for_it() {
    let t0 = Instant::now();
    let (mut rl, p) = one_pool(Mode::Wait { max_wait: Duration::from_secs(5) }, 2, 10);
    rl.charge(t0, p, 1);
    rl.charge(t0, p, 1);
    rl.charge(t0, p, 1); // one in debt
    assert_eq!(rl.available(t0, p), 0);
    // The next one waits 200 ms: 100 ms to pay the debt, 100 ms for its own credit.
    assert_eq!(rl.acquire(t0, p, 1), Acquire::Wait(t0 + ms(200)));
    assert_eq!(rl.stats().granted, 3);
}
