from desktop_llm.core.reply_stats import finish_text, reply_figures

DONE = {"usage": {"prompt_tokens": 12, "completion_tokens": 30}, "ttft_ms": 41.6, "tokens_per_second": 55.25,
        "finish_reason": "length", "seed": 7}


def test_figures_read_in_order_with_units():
    assert reply_figures(DONE, seed=True) == ["12 prompt tokens", "30 generated", "first token 42 ms",
                                              "55.2 tokens/s", "max tokens reached", "seed 7"]


def test_short_form_for_the_status_bar():
    assert reply_figures(DONE, usage=False, finish=False) == ["first token 42 ms", "55.2 tokens/s"]


def test_missing_figures_show_a_dash_not_zero():
    assert reply_figures({"finish_reason": "cancelled"}, usage=False) == ["first token –", "– tokens/s", "stopped"]


def test_a_full_context_is_named_as_the_reason():
    assert finish_text({"finish_reason": "length", "context_full": True}) == "context full"
    assert finish_text({"finish_reason": "weird"}) == "weird"
