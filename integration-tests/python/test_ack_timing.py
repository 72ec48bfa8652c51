"""The stall figures the rolling-restart test prints, on hand-made ack times (no cluster)."""
import pytest

from ack_timing import longest_gap, longest_gap_span, percentile, window_figures


def test_a_gap_inside_the_window_is_the_longest():
    assert longest_gap([0.0, 1.0, 1.5, 6.0, 6.2, 9.0, 10.5, 20.0], 1.2, 10.0) == pytest.approx(4.5)


def test_a_stall_that_began_before_the_window_counts_from_the_last_ack_before_it():
    # Acks stopped at 1.0, the window opened at 3.0, the next ack came at 9.0.
    assert longest_gap([0.5, 1.0, 9.0, 9.1], 3.0, 12.0) == pytest.approx(8.0)


def test_a_stall_that_outlasts_the_window_counts_until_the_next_ack():
    assert longest_gap([0.0, 2.0, 15.0], 1.0, 10.0) == pytest.approx(13.0)


def test_without_any_ack_the_whole_window_is_the_gap():
    assert longest_gap([], 3.0, 7.5) == pytest.approx(4.5)


def test_acks_outside_the_window_bound_its_edges():
    # Steady acks every 0.1 s around a window with none inside it: the gap spans the window.
    times = [i / 10 for i in range(0, 11)] + [5.0 + i / 10 for i in range(0, 11)]
    assert longest_gap(times, 2.0, 4.0) == pytest.approx(4.0)


def test_the_span_names_the_acks_around_the_longest_gap():
    assert longest_gap_span([0.0, 1.0, 1.5, 6.0, 6.2, 9.0, 10.5], 1.2, 10.0) == (1.5, 6.0)


def test_a_window_that_ends_before_it_starts_is_refused():
    with pytest.raises(ValueError):
        longest_gap([1.0], 5.0, 4.0)


def test_the_percentile_is_the_nearest_rank():
    values = list(range(1, 101))
    assert percentile(values, 0.99) == 99
    assert percentile(values, 1.0) == 100
    assert percentile(values, 0.07) == 7
    assert percentile([3.0], 0.99) == 3.0
    assert percentile([], 0.99) is None


def test_the_percentile_of_unsorted_values_sorts_them_first():
    assert percentile([9, 1, 5, 3, 7], 0.5) == 5


def test_window_figures_keep_each_partition_apart():
    # Partition 0 acks throughout; partition 1 stalls from 2.0 to 8.0.
    acks = [(t / 2, 0, 0.01) for t in range(0, 21)] + [(1.0, 1, 0.02), (2.0, 1, 0.02),
                                                        (8.0, 1, 6.0), (9.0, 1, 0.02)]
    f = window_figures(acks, 1.5, 9.5)
    assert f["longest_gap_s"] == pytest.approx(0.5)
    assert f["longest_gap_from_s"] == pytest.approx(-0.5)
    assert f["longest_gap_per_partition_s"] == {"0": 0.5, "1": 6.0}
    assert f["max_latency_s"] == pytest.approx(6.0)
    assert f["acked"] == sum(1 for t, _, _ in acks if 1.5 <= t <= 9.5)


def test_records_without_a_latency_are_left_out_of_the_percentile():
    f = window_figures([(1.0, 0, None), (2.0, 0, 0.5)], 0.0, 3.0)
    assert f["sent_with_latency"] == 1
    assert f["p99_latency_s"] == pytest.approx(0.5)
    assert f["acked"] == 2


def test_the_latencies_are_those_of_the_records_sent_inside_the_window():
    # The window is [1.5, 5.0]; acks stalled from 2.0 to 7.0. The record acked at 7.0 was
    # sent at 2.5 and waited 4.5 s: it counts although its ack fell past the window. The one
    # acked at 2.0 was sent at 1.0, before the window, and the one at 9.0 after it.
    acks = [(1.0, 0, 0.01), (2.0, 0, 1.0), (7.0, 0, 4.5), (9.0, 0, 0.01)]
    f = window_figures(acks, 1.5, 5.0)
    assert f["longest_gap_s"] == pytest.approx(5.0)
    assert f["max_latency_s"] == pytest.approx(4.5)
    assert f["sent_with_latency"] == 1
    assert f["acked"] == 1
