// The CloudEvent formatter as it was before the fast formatter replaced it,
// kept verbatim (in its own namespace) for the tests only: the differential
// test formats the same records with both and requires identical bytes, so
// the output stays pinned to what consumers of the event stream already read.
// Do not "improve" this file; it is the specification by example.
#pragma once

#include <string>
#include <string_view>

#include "dnsgate/events.hpp"

namespace dnsgate::reference {

void append_cloud_event(std::string& out, const QueryRecord& record, std::string_view cell,
                        std::string_view event_id);

std::string format_cloud_event(const QueryRecord& record, std::string_view cell,
                               std::string_view event_id);

}  // namespace dnsgate::reference
