// find_opt and full_rcode: the OPT record of a message, found by walking
// the records the header announces over the octets present.
#include "dns/opt_record.hpp"

#include <gtest/gtest.h>

#include "wire_builder.hpp"

namespace dnsgate {
namespace {

using test::Wire;

TEST(OptRecord, FoundInTheAdditionalSectionAfterAnswers) {
  const auto answer = Wire()
                          .header(1, 0x8180, 1, 1, 0, 1)
                          .question("example.com")
                          .pointer(12)
                          .rr_tail(1, 1, 60, {192, 0, 2, 1})
                          .opt(1232, 0x01008000)  // extended rcode 1, version 0, DO
                          .build();
  const auto opt = find_opt(answer);
  ASSERT_TRUE(opt.has_value());
  EXPECT_EQ(opt->end, answer.size());
  EXPECT_TRUE(opt->last);
  EXPECT_EQ(answer[opt->start], 0);
  EXPECT_EQ(opt->rdlength_at, opt->start + 9);
  EXPECT_EQ(full_rcode(answer), 16);  // BADVERS: 1 << 4 | 0
}

TEST(OptRecord, AnOptOutsideTheAdditionalSectionIsNoEdns) {
  const auto in_answer =
      Wire().header(1, 0x8183, 1, 1, 0, 0).question("example.com").opt(512, 0x01000000).build();
  EXPECT_FALSE(find_opt(in_answer).has_value());
  EXPECT_EQ(full_rcode(in_answer), 3);
}

TEST(OptRecord, ARecordAfterTheOptMakesItNotLast) {
  const auto signed_query = Wire()
                                .header(1, 0, 1, 0, 0, 2)
                                .question("example.com")
                                .opt(1232, 0)
                                .name("key.")
                                .rr_tail(250, 255, 0, {1, 2, 3})
                                .build();
  const auto opt = find_opt(signed_query);
  ASSERT_TRUE(opt.has_value());
  EXPECT_FALSE(opt->last);
}

TEST(OptRecord, CutShortMessagesHaveNone) {
  auto answer = Wire().header(1, 0x8180, 1, 0, 0, 1).question("example.com").opt(1232, 0).build();
  for (std::size_t size = 0; size < answer.size(); ++size) {
    const std::span<const std::uint8_t> cut(answer.data(), size);
    EXPECT_FALSE(find_opt(cut).has_value()) << size;
    (void)full_rcode(cut);  // never reads past the end (ASan)
  }
}

}  // namespace
}  // namespace dnsgate
