// The CloudEvents HTTP binding, batched mode (DESIGN.md §11): each send()
// is one POST of a JSON array of events over a kept-alive connection.
//
// Bounds of one send(): connecting takes at most kConnectTimeoutMs, the
// whole request kTotalTimeoutMs; cancel() ends a request within about a
// second (libcurl calls the progress function that often while it waits).
#include <curl/curl.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include <fmt/format.h>

#include "events/delivery.hpp"

namespace dnsgate {

namespace {

constexpr long kConnectTimeoutMs = 2000;
// A collector that takes longer than this for a batch is treated as away:
// the batch is retried (the collector may have taken it: CloudEvents
// consumers deduplicate by id).
constexpr long kTotalTimeoutMs = 10000;
// Enough of a refusal's body to say why in the log, not to hold a page.
constexpr std::size_t kMaxResponseExcerpt = 300;

constexpr std::string_view kContentType = "application/cloudevents-batch+json";

std::once_flag curl_init_once;
CURLcode curl_init_result = CURLE_OK;

// libcurl asks for its global state once per process, before any thread
// uses it; the delivery threads may open concurrently.
CURLcode init_curl() {
  std::call_once(curl_init_once, [] { curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT); });
  return curl_init_result;
}

// One line for the log: the collector's text may hold newlines and control
// characters of its own.
std::string one_line(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto octet = static_cast<unsigned char>(c);
    if (octet < ' ' || octet == 0x7F) {
      if (!out.empty() && out.back() != ' ') out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

class HttpDelivery final : public EventDelivery {
 public:
  explicit HttpDelivery(HttpSinkConfig config) : config_(std::move(config)) {}

  ~HttpDelivery() override {
    curl_easy_cleanup(curl_);
    curl_slist_free_all(headers_);
  }

  // The handle and the options that do not change between requests; the
  // error if this libcurl cannot (out of memory, built without HTTP).
  std::string init() {
    curl_ = curl_easy_init();
    if (curl_ == nullptr) return "http: libcurl: cannot make a handle";
    for (const std::string& header : {
             fmt::format("Content-Type: {}", kContentType),
             // libcurl would otherwise wait up to a second for "100
             // Continue" before sending a large body; collectors rarely
             // answer it.
             std::string("Expect:"),
         }) {
      curl_slist* longer = curl_slist_append(headers_, header.c_str());
      if (longer == nullptr) return "http: libcurl: out of memory";
      headers_ = longer;
    }
    bool ok = true;
    const auto set = [&](CURLoption option, auto value) {
      ok = ok && curl_easy_setopt(curl_, option, value) == CURLE_OK;
    };
    set(CURLOPT_URL, config_.url.c_str());
    set(CURLOPT_PROTOCOLS_STR, "http,https");
    set(CURLOPT_POST, 1L);
    set(CURLOPT_HTTPHEADER, headers_);
    set(CURLOPT_USERAGENT, "dnsgate");
    // Signals are the process's own (SIGHUP, SIGUSR1); libcurl must not
    // use SIGALRM for its timeouts on this thread.
    set(CURLOPT_NOSIGNAL, 1L);
    set(CURLOPT_CONNECTTIMEOUT_MS, kConnectTimeoutMs);
    set(CURLOPT_TIMEOUT_MS, kTotalTimeoutMs);
    set(CURLOPT_TCP_KEEPALIVE, 1L);
    // A redirect answers with another URL: the operator fixes the config,
    // the events wait in the spool (retried, not followed).
    set(CURLOPT_FOLLOWLOCATION, 0L);
    set(CURLOPT_ERRORBUFFER, error_);
    set(CURLOPT_WRITEFUNCTION, &HttpDelivery::on_body);
    set(CURLOPT_WRITEDATA, this);
    set(CURLOPT_NOPROGRESS, 0L);
    set(CURLOPT_XFERINFOFUNCTION, &HttpDelivery::on_progress);
    set(CURLOPT_XFERINFODATA, this);
    return ok ? std::string() : fmt::format("http: this libcurl cannot POST to {}", config_.url);
  }

  // A batch larger than batchMax goes in several POSTs, in order, up to
  // the first that fails.
  DeliveryResult send(std::span<const OutgoingEvent> batch) override {
    DeliveryResult result;
    for (std::size_t at = 0; at < batch.size();) {
      const auto part = batch.subspan(at, std::min(config_.batch_max, batch.size() - at));
      DeliveryResult posted = post(part);
      if (posted.outcome != DeliveryOutcome::delivered) {
        result.outcome = posted.outcome;
        result.error = std::move(posted.error);
        errors_.fetch_add(1, std::memory_order_relaxed);
        // Refused: this POST's events; those after it were not offered.
        if (result.outcome == DeliveryOutcome::rejected) {
          result.rejected = part.size();
          rejected_.fetch_add(part.size(), std::memory_order_relaxed);
        } else {
          retried_.fetch_add(batch.size() - result.delivered, std::memory_order_relaxed);
        }
        return result;
      }
      result.delivered += part.size();
      delivered_.fetch_add(part.size(), std::memory_order_relaxed);
      at += part.size();
    }
    return result;
  }

  std::size_t batch_max() const noexcept override { return config_.batch_max; }

  void cancel() noexcept override { cancelled_.store(true, std::memory_order_relaxed); }

  DeliveryCounts counts() const noexcept override {
    DeliveryCounts counts;
    counts.sent = sent_.load(std::memory_order_relaxed);
    counts.delivered = delivered_.load(std::memory_order_relaxed);
    counts.retried = retried_.load(std::memory_order_relaxed);
    counts.rejected = rejected_.load(std::memory_order_relaxed);
    counts.errors = errors_.load(std::memory_order_relaxed);
    return counts;
  }

  std::string describe() const override {
    return fmt::format("{} batchMax {}", config_.url, config_.batch_max);
  }

 private:
  // One POST; the caller counts.
  DeliveryResult post(std::span<const OutgoingEvent> batch) {
    if (cancelled_.load(std::memory_order_relaxed)) {
      return fail(DeliveryOutcome::retry, "http: cancelled (shutting down)");
    }

    std::size_t bytes = 2;
    for (const OutgoingEvent& event : batch) bytes += event.line.size() + 1;
    body_.clear();
    body_.reserve(bytes);
    body_.push_back('[');
    for (const OutgoingEvent& event : batch) {
      if (body_.size() > 1) body_.push_back(',');
      body_.append(event.line);
    }
    body_.push_back(']');

    response_.clear();
    error_[0] = '\0';
    curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, body_.data());
    curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body_.size()));
    sent_.fetch_add(batch.size(), std::memory_order_relaxed);

    const CURLcode code = curl_easy_perform(curl_);
    if (code != CURLE_OK) {
      if (code == CURLE_ABORTED_BY_CALLBACK) {
        return fail(DeliveryOutcome::retry, "http: cancelled (shutting down)");
      }
      const std::string_view why = error_[0] != '\0' ? error_ : curl_easy_strerror(code);
      return fail(DeliveryOutcome::retry,
                  fmt::format("http: POST {}: {}", config_.url, one_line(why)));
    }

    long status = 0;
    curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 200 && status < 300) return {};
    std::string error = fmt::format("http: POST {}: HTTP {}", config_.url, status);
    const std::string excerpt = one_line(response_);
    if (!excerpt.empty()) error += fmt::format(": {}", excerpt);
    // 429 asks for patience, 5xx is the collector's own trouble, anything
    // else neither success nor a 4xx (a redirect) needs the operator: the
    // spool keeps the events meanwhile. Other 4xx refuse these events, and
    // sending them again would be refused again.
    const bool permanent = status >= 400 && status < 500 && status != 429;
    return fail(permanent ? DeliveryOutcome::rejected : DeliveryOutcome::retry, std::move(error));
  }

  static DeliveryResult fail(DeliveryOutcome outcome, std::string error) {
    DeliveryResult result;
    result.outcome = outcome;
    result.error = std::move(error);
    return result;
  }

  // libcurl calls these from inside curl_easy_perform, on this thread; no
  // exception may cross back into C.
  static std::size_t on_body(char* data, std::size_t size, std::size_t count, void* self) noexcept {
    auto& delivery = *static_cast<HttpDelivery*>(self);
    const std::size_t bytes = size * count;
    const std::size_t room =
        kMaxResponseExcerpt - std::min(kMaxResponseExcerpt, delivery.response_.size());
    try {
      delivery.response_.append(data, std::min(room, bytes));
    } catch (const std::bad_alloc&) {
      // The excerpt only decorates the log line.
    }
    return bytes;
  }

  static int on_progress(void* self, curl_off_t /*download_total*/, curl_off_t /*downloaded*/,
                         curl_off_t /*upload_total*/, curl_off_t /*uploaded*/) noexcept {
    return static_cast<HttpDelivery*>(self)->cancelled_.load(std::memory_order_relaxed) ? 1 : 0;
  }

  const HttpSinkConfig config_;
  CURL* curl_ = nullptr;
  curl_slist* headers_ = nullptr;
  std::string body_;
  std::string response_;
  char error_[CURL_ERROR_SIZE] = {};
  std::atomic<bool> cancelled_{false};
  std::atomic<std::uint64_t> sent_{0};
  std::atomic<std::uint64_t> delivered_{0};
  std::atomic<std::uint64_t> retried_{0};
  std::atomic<std::uint64_t> rejected_{0};
  std::atomic<std::uint64_t> errors_{0};
};

}  // namespace

std::variant<std::unique_ptr<EventDelivery>, std::string> open_http_delivery(
    const HttpSinkConfig& config) {
  if (config.batch_max == 0 || config.batch_max > kMaxHttpBatch) {
    return fmt::format("http: batchMax {} is not between 1 and {}", config.batch_max,
                       kMaxHttpBatch);
  }
  if (const CURLcode code = init_curl(); code != CURLE_OK) {
    return fmt::format("http: libcurl: {}", curl_easy_strerror(code));
  }

  // Parsed here so that a URL libcurl cannot use fails at start, not at
  // the first event.
  CURLU* parsed = curl_url();
  if (parsed == nullptr) return std::string("http: libcurl: out of memory");
  const CURLUcode parse = curl_url_set(parsed, CURLUPART_URL, config.url.c_str(), 0);
  char* scheme = nullptr;
  const bool http_scheme =
      parse == CURLUE_OK && curl_url_get(parsed, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
      (std::string_view(scheme) == "http" || std::string_view(scheme) == "https");
  curl_free(scheme);
  curl_url_cleanup(parsed);
  if (parse != CURLUE_OK) {
    return fmt::format("http: \"{}\" is not a URL: {}", config.url, curl_url_strerror(parse));
  }
  if (!http_scheme) {
    return fmt::format("http: \"{}\" is not an http:// or https:// URL", config.url);
  }

  auto delivery = std::make_unique<HttpDelivery>(config);
  if (std::string error = delivery->init(); !error.empty()) return error;
  return std::unique_ptr<EventDelivery>(std::move(delivery));
}

}  // namespace dnsgate
