// EDNS Padding of queries for the encrypted upstreams (RFC 7830, RFC 8467):
// to 128-octet blocks when the OPT is the last record, never otherwise.
#include "dns/padding.hpp"

#include <gtest/gtest.h>

#include "dnsgate/parser.hpp"
#include "wire_builder.hpp"

namespace dnsgate {
namespace {

using test::Wire;

std::vector<std::uint8_t> padded(const std::vector<std::uint8_t>& query) {
  std::vector<std::uint8_t> out;
  append_padded(out, query, plan_padding(query));
  return out;
}

TEST(Padding, AQueryWithOptBecomesAMultipleOf128AndStillParses) {
  for (const char* name :
       {"a.example", "www.example.com", "a-much-longer-name.of.many.labels.test"}) {
    const auto query =
        Wire().header(0x1234, 0x0100, 1, 0, 0, 1).question(name).opt(1232, 0).build();
    const auto out = padded(query);
    ASSERT_EQ(out.size() % 128, 0U) << name;
    const auto parsed = parse_query(out);
    ASSERT_TRUE(parsed.ok()) << name;
    EXPECT_TRUE(parsed.value().edns.present);
    EXPECT_EQ(parsed.value().edns.udp_payload_size, 1232);
    // Everything before the OPT's RDLENGTH is the query as it was.
    EXPECT_TRUE(std::equal(query.begin(), query.end() - 2, out.begin()));
    // The option: code 12, its length, zeros to the end.
    const std::size_t option = query.size();
    EXPECT_EQ(out[option], 0);
    EXPECT_EQ(out[option + 1], 12);
    EXPECT_EQ(std::size_t{out[option + 2]} << 8 | out[option + 3], out.size() - option - 4);
    EXPECT_TRUE(std::all_of(out.begin() + static_cast<std::ptrdiff_t>(option + 4), out.end(),
                            [](std::uint8_t b) { return b == 0; }));
  }
}

TEST(Padding, OptionsAlreadyInTheOptAreKept) {
  // A cookie option (10) with an 8-octet client cookie.
  const auto query = Wire()
                         .header(1, 0, 1, 0, 0, 1)
                         .question("example.com")
                         .opt(4096, 0x8000, {0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8})
                         .build();
  const auto out = padded(query);
  EXPECT_EQ(out.size() % 128, 0U);
  EXPECT_TRUE(std::equal(query.end() - 12, query.end(), out.begin() + (query.size() - 12)));
  EXPECT_TRUE(parse_query(out).ok());
}

TEST(Padding, ALengthThatIsAlreadyAMultipleGetsAnEmptyOption) {
  // 124 octets + a 4-octet option header = 128: no zeros needed.
  std::string label(124 - 12 - 4 - 11 - 2, 'a');
  const auto query = Wire().header(1, 0, 1, 0, 0, 1).question(label).opt(1232, 0).build();
  ASSERT_EQ(query.size(), 124U);
  const auto out = padded(query);
  EXPECT_EQ(out.size(), 128U);
  EXPECT_EQ(out[126], 0);
  EXPECT_EQ(out[127], 0);
}

TEST(Padding, LeftAsItIsWithoutOptOrWhenOptIsNotLastOrAlreadyPadded) {
  const auto plain = Wire().header(1, 0, 1, 0, 0, 0).question("example.com").build();
  EXPECT_EQ(plan_padding(plain).extra, 0U);
  EXPECT_EQ(padded(plain), plain);
  // A TSIG-like record after the OPT: padding the OPT would break its MAC.
  const auto opt_then_other = Wire()
                                  .header(1, 0, 1, 0, 0, 2)
                                  .question("example.com")
                                  .opt(1232, 0)
                                  .name("key.")
                                  .rr_tail(250, 255, 0, {1, 2, 3})
                                  .build();
  EXPECT_EQ(plan_padding(opt_then_other).extra, 0U);
  const auto already = Wire()
                           .header(1, 0, 1, 0, 0, 1)
                           .question("example.com")
                           .opt(1232, 0, {0, 12, 0, 2, 0, 0})
                           .build();
  EXPECT_EQ(plan_padding(already).extra, 0U);
  // Found by fuzz/stream_answer_fuzz: an option that claims more octets
  // than the OPT holds would swallow the Padding option after it.
  const auto overlong = Wire()
                            .header(1, 0, 1, 0, 0, 1)
                            .question("example.com")
                            .opt(1232, 0, {0, 10, 1, 0, 1, 2, 3, 4})
                            .build();
  EXPECT_EQ(plan_padding(overlong).extra, 0U);
  // An OPT in the authority section is no EDNS at all (RFC 6891 6.1.1).
  const auto in_authority =
      Wire().header(1, 0, 1, 0, 1, 0).question("example.com").opt(1232, 0).build();
  EXPECT_EQ(plan_padding(in_authority).extra, 0U);
}

}  // namespace
}  // namespace dnsgate
