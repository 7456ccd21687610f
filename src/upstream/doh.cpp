#include "upstream/doh.hpp"

#include <algorithm>
#include <array>
#include <cstring>

#include "dns/padding.hpp"
#include "dns/wire.hpp"
#include "dnsgate/parser.hpp"

namespace dnsgate {

namespace {

constexpr std::string_view kDnsMessage = "application/dns-message";
constexpr std::size_t kMaxAnswer = 65535;  // a DNS message's limit

nghttp2_nv header(std::string_view name, std::string_view value) {
  return {reinterpret_cast<std::uint8_t*>(const_cast<char*>(name.data())),
          reinterpret_cast<std::uint8_t*>(const_cast<char*>(value.data())), name.size(),
          value.size(), NGHTTP2_NV_FLAG_NONE};
}

bool same_ascii_lower(std::string_view value, std::string_view lower) {
  if (value.size() < lower.size()) return false;
  for (std::size_t i = 0; i < lower.size(); ++i) {
    const char c = value[i] >= 'A' && value[i] <= 'Z' ? static_cast<char>(value[i] + 32) : value[i];
    if (c != lower[i]) return false;
  }
  // Parameters may follow ("; charset=..."), nothing else.
  return value.size() == lower.size() || value[lower.size()] == ';' || value[lower.size()] == ' ';
}

DohUpstream* self(void* user_data) {
  return static_cast<DohUpstream*>(user_data);
}

}  // namespace

// What a closed stream means for its query: an answer (no error) or why not.
UpstreamError DohUpstream::outcome(const Stream& stream, std::uint32_t error_code) noexcept {
  if (stream.too_large) return {UpstreamErrorKind::answer_too_large, 0};
  // Reset (or closed) before any header: REFUSED_STREAM would promise it
  // was not handled (RFC 9113 8.7); either way the loop may send the query
  // to the next resolver.
  if (stream.status == 0) return {UpstreamErrorKind::http_stream_reset, 0};
  if (stream.status != 200) {
    return {UpstreamErrorKind::http_status, static_cast<std::uint16_t>(stream.status)};
  }
  if (!stream.dns_message) return {UpstreamErrorKind::http_content_type, 0};
  if (error_code != NGHTTP2_NO_ERROR) return {UpstreamErrorKind::http_stream_reset, 0};
  if (stream.body.size() < kHeaderOctets) return {UpstreamErrorKind::answer_malformed, 0};
  return {};
}

DohUpstream::DohUpstream(const ResolverConfig& resolver, std::unique_ptr<TlsClientContext> tls,
                         std::chrono::milliseconds timeout, UpstreamListener& listener)
    : TlsStreamUpstream(resolver, std::move(tls), timeout, listener, "h2"),
      authority_(resolver.url_host),
      path_(resolver.url_path) {}

DohUpstream::~DohUpstream() {
  on_closed();
}

void DohUpstream::on_established() {
  nghttp2_session_callbacks* callbacks = nullptr;
  nghttp2_session_callbacks_new(&callbacks);
  nghttp2_session_callbacks_set_on_header_callback(
      callbacks, [](nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name,
                    std::size_t namelen, const std::uint8_t* value, std::size_t valuelen,
                    std::uint8_t, void* user) {
        if (frame->hd.type != NGHTTP2_HEADERS) return 0;
        return self(user)->on_header(frame->hd.stream_id,
                                     {reinterpret_cast<const char*>(name), namelen},
                                     {reinterpret_cast<const char*>(value), valuelen});
      });
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
      callbacks,
      [](nghttp2_session*, std::uint8_t, std::int32_t stream_id, const std::uint8_t* data,
         std::size_t length, void* user) { return self(user)->on_data(stream_id, data, length); });
  nghttp2_session_callbacks_set_on_stream_close_callback(
      callbacks, [](nghttp2_session*, std::int32_t stream_id, std::uint32_t error_code,
                    void* user) { return self(user)->on_stream_close(stream_id, error_code); });
  nghttp2_session_callbacks_set_on_frame_recv_callback(
      callbacks, [](nghttp2_session*, const nghttp2_frame* frame, void* user) {
        return self(user)->on_frame(*frame);
      });
  nghttp2_session_client_new(&http_, callbacks, this);
  nghttp2_session_callbacks_del(callbacks);
  protocol_error_ = false;
  const std::array<nghttp2_settings_entry, 2> settings{{
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100},
  }};
  nghttp2_submit_settings(http_, NGHTTP2_FLAG_NONE, settings.data(), settings.size());
}

void DohUpstream::submit(std::span<const std::uint8_t> query) {
  if (http_ == nullptr) return;
  const std::uint16_t id = read_u16(query, 0);
  Stream stream;
  stream.upstream_id = id;
  append_padded(stream.body, query, plan_padding(query));
  // RFC 8484 4.1: id 0 in every request; the stream says which query it is.
  write_u16(stream.body, 0, 0);
  const std::string length = std::to_string(stream.body.size());
  const std::array<nghttp2_nv, 7> headers{{
      header(":method", "POST"),
      header(":scheme", "https"),
      header(":authority", authority_),
      header(":path", path_),
      header("content-type", kDnsMessage),
      header("accept", kDnsMessage),
      header("content-length", length),
  }};
  nghttp2_data_provider body{};
  body.read_callback = [](nghttp2_session*, std::int32_t stream_id, std::uint8_t* out,
                          std::size_t length, std::uint32_t* flags, nghttp2_data_source*,
                          void* user) {
    return self(user)->read_body(stream_id, out, length, flags);
  };
  const std::int32_t stream_id =
      nghttp2_submit_request(http_, nullptr, headers.data(), headers.size(), &body, nullptr);
  if (stream_id < 0) {
    query_failed(id, {UpstreamErrorKind::http_protocol_error, 0}, now_);
    return;
  }
  streams_.emplace(stream_id, std::move(stream));
  stream_of_[id] = stream_id;
}

ssize_t DohUpstream::read_body(std::int32_t stream_id, std::uint8_t* out, std::size_t length,
                               std::uint32_t* flags) {
  const auto found = streams_.find(stream_id);
  if (found == streams_.end()) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  Stream& stream = found->second;
  const std::size_t chunk = std::min(length, stream.body.size() - stream.body_sent);
  std::memcpy(out, stream.body.data() + stream.body_sent, chunk);
  stream.body_sent += chunk;
  if (stream.body_sent == stream.body.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
  return static_cast<ssize_t>(chunk);
}

bool DohUpstream::wants_write() const noexcept {
  return http_ != nullptr && nghttp2_session_want_write(http_) != 0;
}

void DohUpstream::produce() {
  std::vector<std::uint8_t>& out = output();
  while (http_ != nullptr) {
    const std::uint8_t* data = nullptr;
    const ssize_t length = nghttp2_session_mem_send(http_, &data);
    if (length <= 0) break;
    out.insert(out.end(), data, data + length);
  }
}

UpstreamError DohUpstream::consume(std::span<const std::uint8_t> bytes, SteadyTime now) {
  if (http_ == nullptr) return {UpstreamErrorKind::http_protocol_error, 0};
  now_ = now;
  const ssize_t used = nghttp2_session_mem_recv(http_, bytes.data(), bytes.size());
  if (used < 0 || protocol_error_) return {UpstreamErrorKind::http_protocol_error, 0};
  produce();  // SETTINGS acks, WINDOW_UPDATEs
  return {};
}

int DohUpstream::on_header(std::int32_t stream_id, std::string_view name, std::string_view value) {
  const auto found = streams_.find(stream_id);
  if (found == streams_.end()) return 0;
  Stream& stream = found->second;
  if (name == ":status") {
    int status = 0;
    for (const char c : value) status = c >= '0' && c <= '9' ? status * 10 + (c - '0') : 1000;
    stream.status = status < 1000 ? status : 0;
  } else if (name == "content-type") {
    stream.dns_message = same_ascii_lower(value, kDnsMessage);
  }
  return 0;
}

int DohUpstream::on_data(std::int32_t stream_id, const std::uint8_t* data, std::size_t length) {
  const auto found = streams_.find(stream_id);
  if (found == streams_.end()) return 0;
  Stream& stream = found->second;
  if (!stream.answer_started) {
    stream.answer_started = true;
    stream.body.clear();
  }
  if (stream.body.size() + length > kMaxAnswer) {
    stream.too_large = true;
    nghttp2_submit_rst_stream(http_, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_CANCEL);
    return 0;
  }
  stream.body.insert(stream.body.end(), data, data + length);
  return 0;
}

int DohUpstream::on_stream_close(std::int32_t stream_id, std::uint32_t error_code) {
  const auto found = streams_.find(stream_id);
  if (found == streams_.end()) return 0;
  Stream stream = std::move(found->second);
  streams_.erase(found);
  stream_of_.erase(stream.upstream_id);
  const std::uint16_t id = stream.upstream_id;
  if (!queries().pending(id) || queries().generation(id) != generation()) return 0;
  if (const UpstreamError error = outcome(stream, error_code)) {
    query_failed(id, error, now_);
    return 0;
  }
  write_u16(stream.body, 0, id);
  answered(stream.body, now_);
  return 0;
}

int DohUpstream::on_frame(const nghttp2_frame& frame) {
  if (frame.hd.type == NGHTTP2_GOAWAY) {
    // Streams above last_stream_id were not handled; they and any left
    // unanswered go again on a new connection, once this read is done.
    close_after_read({UpstreamErrorKind::http_goaway, 0});
  }
  return 0;
}

void DohUpstream::on_cancel(std::uint16_t upstream_id) noexcept {
  const auto found = stream_of_.find(upstream_id);
  if (found == stream_of_.end() || http_ == nullptr) return;
  // The answer is no longer wanted; the stream's close will find no query.
  nghttp2_submit_rst_stream(http_, NGHTTP2_FLAG_NONE, found->second, NGHTTP2_CANCEL);
  stream_of_.erase(found);
}

void DohUpstream::on_closed() noexcept {
  if (http_ != nullptr) {
    nghttp2_session_del(http_);
    http_ = nullptr;
  }
  streams_.clear();
  stream_of_.clear();
}

}  // namespace dnsgate
