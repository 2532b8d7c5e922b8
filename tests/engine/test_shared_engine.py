"""Two users of one engine (the window and the local server) each get answers from their own model."""

from desktop_llm.engine.client import EngineClient

GREEDY = {"max_tokens": 3, "temperature": 0, "seed": 1}


def test_a_request_for_another_model_swaps_it_in_and_the_next_request_swaps_back(own_engine, bundled_ref):
    own_engine.load(bundled_ref)  # the window's model: context 4096 by default
    server_model = EngineClient.load_request(bundled_ref, options={"n_ctx": 512})

    served = own_engine.generate(prompt="Hello", params=GREEDY, model_load=server_model).result
    assert served["n_ctx"] == 512
    window = own_engine.generate(prompt="Hello", params=GREEDY).result
    assert window["n_ctx"] > 512  # swapped back to the model the window loaded
    assert own_engine.info()["load"]["n_ctx"] == window["n_ctx"]


def test_an_idle_unload_never_frees_a_model_someone_else_swapped_in(own_engine, bundled_ref):
    own_engine.load(bundled_ref)
    server_model = EngineClient.load_request(bundled_ref, options={"n_ctx": 512})
    own_engine.generate(prompt="Hello", params=GREEDY, model_load=server_model).wait()
    own_engine.generate(prompt="Hello", params=GREEDY).wait()  # the window's model is back

    own_engine.unload(only_if=server_model)
    assert own_engine.info()["model"] is not None
    assert own_engine.wanted_load is not None

    own_engine.generate(prompt="Hello", params=GREEDY, model_load=server_model).wait()
    own_engine.unload(only_if=server_model)
    assert own_engine.info()["model"] is None
    # the window's next message brings its model back by itself
    assert own_engine.generate(prompt="Hello", params=GREEDY).result["n_ctx"] > 512
