"""The relay's Prometheus metrics, scraped over HTTP as Prometheus would."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from relayserver.metrics import MAX_LABEL_VALUES, RelayMetrics


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample on ``/metrics``, by name and labels."""
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def port_of(metrics: RelayMetrics) -> int:
    assert metrics.port is not None
    return metrics.port


@pytest.fixture
def metrics() -> Iterator[RelayMetrics]:
    served = RelayMetrics()
    served.serve(0, "127.0.0.1")
    yield served
    served.close()


def test_counters_and_gauges_show_what_was_recorded(metrics: RelayMetrics) -> None:
    cards = ["A", "B", "C"]
    metrics.count_cards_with(lambda: len(cards))
    for _ in range(3):
        metrics.card_connected()
    metrics.card_disconnected("closed")
    metrics.request_received("send")
    metrics.request_received("send")
    metrics.message_relayed(5)
    metrics.message_relayed(7, "cluster")
    metrics.error("wrong_format")
    metrics.heartbeat_round(0.002)
    metrics.writes_paused()
    metrics.write_buffers_sampled(1000, 600)
    metrics.cluster_connected(connected=True)
    metrics.cluster_request("delivered", 0.001)

    samples = scrape(port_of(metrics))

    assert samples[("relay_cards_connected", ())] == 3
    assert samples[("relay_connects_total", ())] == 3
    assert samples[("relay_disconnects_total", (("reason", "closed"),))] == 1
    assert samples[("relay_requests_total", (("kind", "send"),))] == 2
    assert samples[("relay_messages_relayed_total", (("route", "local"),))] == 1
    assert samples[("relay_messages_relayed_total", (("route", "cluster"),))] == 1
    assert samples[("relay_bytes_relayed_total", (("route", "local"),))] == 5
    assert samples[("relay_bytes_relayed_total", (("route", "cluster"),))] == 7
    assert samples[("relay_errors_total", (("error", "wrong_format"),))] == 1
    assert samples[("relay_heartbeat_round_seconds_count", ())] == 1
    assert samples[("relay_write_pauses_total", ())] == 1
    assert samples[("relay_write_buffer_bytes", ())] == 1000
    assert samples[("relay_write_buffer_largest_bytes", ())] == 600
    assert samples[("relay_cluster_connected", ())] == 1
    assert samples[("relay_cluster_requests_total", (("result", "delivered"),))] == 1


def test_a_scrape_sees_the_counters_move(metrics: RelayMetrics) -> None:
    metrics.request_received("ping")
    before = scrape(port_of(metrics))[("relay_requests_total", (("kind", "ping"),))]

    metrics.request_received("ping")

    after = scrape(port_of(metrics))[("relay_requests_total", (("kind", "ping"),))]
    assert after == before + 1


def test_label_values_stay_few_and_tame(metrics: RelayMetrics) -> None:
    for index in range(MAX_LABEL_VALUES * 3):
        metrics.error(f"kind_{index}")
    metrics.error("Not A Label {}")

    errors = {
        labels
        for name, labels in scrape(port_of(metrics))
        if name == "relay_errors_total"
    }

    assert len(errors) == MAX_LABEL_VALUES + 1
    assert (("error", "other"),) in errors


def test_two_relays_in_one_process_keep_their_own_figures() -> None:
    one, two = RelayMetrics(), RelayMetrics()
    one_port, two_port = one.serve(0, "127.0.0.1"), two.serve(0, "127.0.0.1")
    try:
        one.card_connected()

        assert scrape(one_port)[("relay_connects_total", ())] == 1
        assert scrape(two_port)[("relay_connects_total", ())] == 0
    finally:
        one.close()
        two.close()


def test_closing_stops_the_http_server() -> None:
    metrics = RelayMetrics()
    port = metrics.serve(0, "127.0.0.1")
    metrics.close()
    metrics.close()

    with pytest.raises(urllib.error.URLError):
        scrape(port)


class Transport:
    def __init__(self, unsent: int) -> None:
        self.unsent = unsent

    def get_write_buffer_size(self) -> int:
        return self.unsent


class Connection:
    def __init__(self, unsent: int) -> None:
        self.transport = Transport(unsent)


def test_a_timed_round_records_once_every_card_was_visited(
    metrics: RelayMetrics,
) -> None:
    connections = [Connection(unsent) for unsent in (0, 300, 50)]
    visited: list[Connection] = []
    visit = metrics.timed_round(visited.append, len(connections))

    for connection in connections[:2]:
        visit(connection)
    before = scrape(port_of(metrics))
    visit(connections[2])
    after = scrape(port_of(metrics))

    assert visited == connections
    assert before[("relay_heartbeat_round_seconds_count", ())] == 0
    assert after[("relay_heartbeat_round_seconds_count", ())] == 1
    assert after[("relay_write_buffer_bytes", ())] == 350
    assert after[("relay_write_buffer_largest_bytes", ())] == 300


def test_a_run_of_sends_counts_every_message(metrics: RelayMetrics) -> None:
    metrics.sends_relayed(3, [[b"ab", b"c"], [b"defg"]])

    samples = scrape(port_of(metrics))
    assert samples[("relay_requests_total", (("kind", "send"),))] == 3
    assert samples[("relay_messages_relayed_total", (("route", "local"),))] == 3
    assert samples[("relay_bytes_relayed_total", (("route", "local"),))] == 7
