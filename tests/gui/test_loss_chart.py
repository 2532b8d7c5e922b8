"""The live loss chart draws what training reports."""

from __future__ import annotations

from desktop_llm.gui.loss_chart import TRAIN_COLOUR, VALIDATION_COLOUR, LossChart, nice_ticks


def colour_pixels(widget, colour) -> int:
    image = widget.grab().toImage()
    target = colour.rgb()
    return sum(1 for y in range(0, image.height(), 2) for x in range(0, image.width(), 2)
               if image.pixel(x, y) == target)


def test_ticks_are_round_and_cover_the_range():
    assert nice_ticks(0.3, 3.2) == [0.0, 1.0, 2.0, 3.0]
    assert nice_ticks(0, 120, 6) == [0, 20, 40, 60, 80, 100, 120]


def test_lines_appear_as_losses_arrive(qtbot):
    chart = LossChart()
    qtbot.addWidget(chart)
    chart.resize(500, 240)
    chart.clear(total_steps=50)
    legend_only = colour_pixels(chart, TRAIN_COLOUR)  # the legend's swatch
    for step in range(1, 31):
        chart.add_train(step, 3.0 / step + 0.4)
    assert colour_pixels(chart, TRAIN_COLOUR) > legend_only + 50
    before = colour_pixels(chart, VALIDATION_COLOUR)
    chart.add_validation(10, 1.2)
    chart.add_validation(20, 0.9)
    assert colour_pixels(chart, VALIDATION_COLOUR) > before
    chart.add_train(31, float("nan"))  # a diverged step is not drawn (and does not break the chart)
    assert len(chart.train) == 30
