// ResolverSet: the failover/roundRobin choice and the down/backoff/probe
// rules of DESIGN.md §8, on a clock the test moves by hand.
#include "upstream/resolver_set.hpp"

#include <gtest/gtest.h>

namespace dnsgate {
namespace {

using std::chrono::milliseconds;

constexpr UpstreamError kRefused{UpstreamErrorKind::connect_refused, 0};
constexpr UpstreamError kStatus500{UpstreamErrorKind::http_status, 500};

const SteadyTime kStart = SteadyTime{} + std::chrono::hours(1);

TEST(ResolverSet, FailoverSendsEverythingToTheFirstThatIsUp) {
  ResolverSet set(3, ResolverPolicy::failover);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(set.choose(kStart), 0U);
  set.on_failure(0, kRefused, kStart);  // a failed connection: down at once
  EXPECT_FALSE(set.is_up(0));
  EXPECT_EQ(set.choose(kStart), 1U);
  EXPECT_EQ(set.times_down(0), 1U);
}

TEST(ResolverSet, ThreeQueryFailuresOrTimeoutsInARowTakeItDown) {
  ResolverSet set(2, ResolverPolicy::failover);
  set.on_timeout(0, kStart);
  set.on_failure(0, kStatus500, kStart);
  EXPECT_TRUE(set.is_up(0));
  set.on_answer(0);  // an answer breaks the row
  set.on_timeout(0, kStart);
  set.on_timeout(0, kStart);
  EXPECT_TRUE(set.is_up(0));
  set.on_timeout(0, kStart);
  EXPECT_FALSE(set.is_up(0));
  EXPECT_EQ(set.choose(kStart), 1U);
}

TEST(ResolverSet, ADownResolverIsProbedByOneRealQueryAfterItsBackoff) {
  ResolverSet set(2, ResolverPolicy::failover);
  set.on_failure(0, kRefused, kStart);
  EXPECT_EQ(set.choose(kStart + milliseconds(999)), 1U);
  // The backoff (1 s) is over: the next query is the probe, the ones after
  // it go elsewhere until the probe is answered.
  EXPECT_EQ(set.choose(kStart + milliseconds(1000)), 0U);
  EXPECT_EQ(set.choose(kStart + milliseconds(1001)), 1U);
  set.on_answer(0);
  EXPECT_TRUE(set.is_up(0));
  EXPECT_EQ(set.choose(kStart + milliseconds(1002)), 0U);
}

TEST(ResolverSet, AFailedProbeDoublesTheBackoffUpTo60Seconds) {
  ResolverSet set(2, ResolverPolicy::failover);
  SteadyTime now = kStart;
  set.on_failure(0, kRefused, now);
  milliseconds backoff{1000};
  for (int round = 0; round < 10; ++round) {
    EXPECT_EQ(set.choose(now + backoff - milliseconds(1)), 1U) << "round " << round;
    now += backoff;
    ASSERT_EQ(set.choose(now), 0U) << "round " << round;  // the probe
    set.on_timeout(0, now);
    backoff = std::min(backoff * 2, milliseconds(60000));
  }
  EXPECT_EQ(backoff, milliseconds(60000));
  EXPECT_EQ(set.times_down(0), 1U);  // one outage, many failed probes
}

TEST(ResolverSet, FailuresOfQueriesSentWhileDownDoNotLengthenTheBackoff) {
  ResolverSet set(1, ResolverPolicy::failover);
  set.on_failure(0, kRefused, kStart);
  // The only resolver: queries still go to it (never failed unsent) ...
  EXPECT_EQ(set.choose(kStart), 0U);
  set.on_failure(0, kRefused, kStart);
  set.on_failure(0, kRefused, kStart);
  // ... and its probe is still due after the first backoff.
  EXPECT_EQ(set.choose(kStart + milliseconds(1000)), 0U);
  set.on_answer(0);
  EXPECT_TRUE(set.is_up(0));
}

TEST(ResolverSet, WhenAllAreDownTheOneWhoseBackoffEndsFirstGetsTheQuery) {
  ResolverSet set(3, ResolverPolicy::failover);
  set.on_failure(1, kRefused, kStart);
  set.on_failure(0, kRefused, kStart + milliseconds(10));
  set.on_failure(2, kRefused, kStart + milliseconds(20));
  EXPECT_EQ(set.choose(kStart + milliseconds(30)), 1U);
}

TEST(ResolverSet, RetryGoesToAResolverNotYetTried) {
  ResolverSet set(3, ResolverPolicy::failover);
  EXPECT_EQ(set.choose(kStart, 0b001), 1U);
  EXPECT_EQ(set.choose(kStart, 0b011), 2U);
  EXPECT_EQ(set.choose(kStart, 0b111), ResolverSet::kNone);
}

TEST(ResolverSet, RoundRobinTakesTurnsOverTheResolversThatAreUp) {
  ResolverSet set(3, ResolverPolicy::round_robin);
  EXPECT_EQ(set.choose(kStart), 0U);
  EXPECT_EQ(set.choose(kStart), 1U);
  EXPECT_EQ(set.choose(kStart), 2U);
  EXPECT_EQ(set.choose(kStart), 0U);
  set.on_failure(1, kRefused, kStart);
  EXPECT_EQ(set.choose(kStart), 2U);
  EXPECT_EQ(set.choose(kStart), 0U);
  EXPECT_EQ(set.choose(kStart), 2U);
}

TEST(ResolverSet, ConnectionFailuresAreToldFromQueryFailures) {
  EXPECT_TRUE(ResolverSet::is_connection_failure({UpstreamErrorKind::tls_certificate, 0}));
  EXPECT_TRUE(ResolverSet::is_connection_failure({UpstreamErrorKind::doq_protocol_error, 0}));
  EXPECT_FALSE(ResolverSet::is_connection_failure(kStatus500));
  EXPECT_FALSE(ResolverSet::is_connection_failure({UpstreamErrorKind::http_stream_reset, 0}));
}

}  // namespace
}  // namespace dnsgate
