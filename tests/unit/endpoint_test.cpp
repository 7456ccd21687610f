#include "dnsgate/endpoint.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>
#include <string>

namespace dnsgate {
namespace {

TEST(EndpointParse, Ipv4RoundTrips) {
  const auto endpoint = Endpoint::parse("127.0.0.1:5353");
  ASSERT_TRUE(endpoint.has_value());
  EXPECT_EQ(endpoint->family(), AF_INET);
  EXPECT_EQ(endpoint->port(), 5353);
  EXPECT_EQ(endpoint->to_string(), "127.0.0.1:5353");
}

TEST(EndpointParse, Ipv6InBracketsRoundTrips) {
  const auto endpoint = Endpoint::parse("[::1]:53");
  ASSERT_TRUE(endpoint.has_value());
  EXPECT_EQ(endpoint->family(), AF_INET6);
  EXPECT_EQ(endpoint->port(), 53);
  EXPECT_EQ(endpoint->to_string(), "[::1]:53");
}

TEST(EndpointParse, Ipv6IsPrintedInCanonicalForm) {
  const auto endpoint = Endpoint::parse("[2001:DB8:0:0:0:0:0:1]:853");
  ASSERT_TRUE(endpoint.has_value());
  EXPECT_EQ(endpoint->to_string(), "[2001:db8::1]:853");
}

TEST(EndpointParse, Ipv4MappedIpv6StaysIpv6) {
  const auto endpoint = Endpoint::parse("[::ffff:192.0.2.1]:53");
  ASSERT_TRUE(endpoint.has_value());
  EXPECT_EQ(endpoint->family(), AF_INET6);
  EXPECT_EQ(endpoint->to_string(), "[::ffff:192.0.2.1]:53");
}

TEST(EndpointParse, PortLimits) {
  ASSERT_TRUE(Endpoint::parse("10.0.0.1:1").has_value());
  EXPECT_EQ(Endpoint::parse("10.0.0.1:1")->port(), 1);
  ASSERT_TRUE(Endpoint::parse("10.0.0.1:65535").has_value());
  EXPECT_EQ(Endpoint::parse("10.0.0.1:65535")->port(), 65535);
  EXPECT_FALSE(Endpoint::parse("10.0.0.1:0").has_value());
  EXPECT_FALSE(Endpoint::parse("10.0.0.1:65536").has_value());
  EXPECT_FALSE(Endpoint::parse("10.0.0.1:100000").has_value());
  EXPECT_FALSE(Endpoint::parse("[::1]:0").has_value());
  EXPECT_FALSE(Endpoint::parse("[::1]:65536").has_value());
}

TEST(EndpointParse, RejectsMissingPort) {
  EXPECT_FALSE(Endpoint::parse("127.0.0.1").has_value());
  EXPECT_FALSE(Endpoint::parse("127.0.0.1:").has_value());
  EXPECT_FALSE(Endpoint::parse("[::1]").has_value());
  EXPECT_FALSE(Endpoint::parse("[::1]:").has_value());
}

TEST(EndpointParse, RejectsIpv6WithoutBrackets) {
  EXPECT_FALSE(Endpoint::parse("::1:53").has_value());
  EXPECT_FALSE(Endpoint::parse("2001:db8::1:53").has_value());
  EXPECT_FALSE(Endpoint::parse("::1").has_value());
}

TEST(EndpointParse, RejectsHostNames) {
  EXPECT_FALSE(Endpoint::parse("localhost:53").has_value());
  EXPECT_FALSE(Endpoint::parse("dns.example.com:53").has_value());
  EXPECT_FALSE(Endpoint::parse("[localhost]:53").has_value());
}

TEST(EndpointParse, RejectsGarbage) {
  for (const char* text : {"",
                           ":",
                           ":53",
                           "[]:53",
                           "[::1]53",
                           "[::1:53",
                           "::1]:53",
                           "[::1]:53x",
                           "[::1]:+53",
                           "1.2.3.4:+53",
                           "1.2.3.4:-1",
                           "1.2.3.4:53 ",
                           " 1.2.3.4:53",
                           "1.2.3.4: 53",
                           "1.2.3:53",
                           "1.2.3.256:53",
                           "1.2.3.4.5:53",
                           "01.2.3.4:53",
                           "[1.2.3.4]:53",
                           "1.2.3.4:0x35",
                           "[fe80::1%eth0]:53",
                           "1.2.3.4:53:53"}) {
    EXPECT_FALSE(Endpoint::parse(text).has_value()) << '"' << text << '"';
  }
}

TEST(EndpointParse, RejectsEmbeddedNul) {
  EXPECT_FALSE(Endpoint::parse(std::string("1.2.3.4\0:53", 11)).has_value());
  EXPECT_FALSE(Endpoint::parse(std::string("1.2.3.4\0x:53", 12)).has_value());
  EXPECT_FALSE(Endpoint::parse(std::string("[::1\0]:53", 9)).has_value());
  EXPECT_FALSE(Endpoint::parse(std::string("1.2.3.4:5\0", 10)).has_value());
}

TEST(EndpointSockaddr, Ipv4RoundTrip) {
  const auto endpoint = Endpoint::parse("192.0.2.7:4053");
  ASSERT_TRUE(endpoint.has_value());
  sockaddr_storage storage;
  const socklen_t length = endpoint->to_sockaddr(storage);
  ASSERT_EQ(length, sizeof(sockaddr_in));
  sockaddr_in in4;
  std::memcpy(&in4, &storage, sizeof in4);
  EXPECT_EQ(in4.sin_family, AF_INET);
  EXPECT_EQ(ntohs(in4.sin_port), 4053);
  EXPECT_EQ(ntohl(in4.sin_addr.s_addr), 0xC0000207u);

  const auto back = Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&storage), length);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, *endpoint);
}

TEST(EndpointSockaddr, Ipv6RoundTrip) {
  const auto endpoint = Endpoint::parse("[2001:db8::53]:5300");
  ASSERT_TRUE(endpoint.has_value());
  sockaddr_storage storage;
  const socklen_t length = endpoint->to_sockaddr(storage);
  ASSERT_EQ(length, sizeof(sockaddr_in6));
  sockaddr_in6 in6;
  std::memcpy(&in6, &storage, sizeof in6);
  EXPECT_EQ(in6.sin6_family, AF_INET6);
  EXPECT_EQ(ntohs(in6.sin6_port), 5300);

  const auto back = Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&storage), length);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, *endpoint);
  EXPECT_EQ(back->to_string(), "[2001:db8::53]:5300");
}

TEST(EndpointSockaddr, RejectsOtherFamiliesAndShortLengths) {
  sockaddr_storage storage{};
  storage.ss_family = AF_UNIX;
  EXPECT_FALSE(
      Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&storage), sizeof storage));

  const auto endpoint = Endpoint::parse("[::1]:53");
  ASSERT_TRUE(endpoint.has_value());
  const socklen_t length = endpoint->to_sockaddr(storage);
  EXPECT_FALSE(Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&storage), length - 1));
  EXPECT_FALSE(Endpoint::from_sockaddr(nullptr, length));
}

TEST(EndpointCompare, FamilyAddressAndPortAllCount) {
  EXPECT_EQ(*Endpoint::parse("127.0.0.1:53"), *Endpoint::parse("127.0.0.1:53"));
  EXPECT_NE(*Endpoint::parse("127.0.0.1:53"), *Endpoint::parse("127.0.0.1:54"));
  EXPECT_NE(*Endpoint::parse("127.0.0.1:53"), *Endpoint::parse("127.0.0.2:53"));
  EXPECT_NE(*Endpoint::parse("0.0.0.0:53"), *Endpoint::parse("[::]:53"));
}

}  // namespace
}  // namespace dnsgate
