"""A local cluster started by llmctr keeps Ray's token auth on: it works for this machine's own driver (Ray Data,
Serve over HTTP, the dashboard SDK that deploys the graph) and refuses a client that has no token."""

import json
import os
import subprocess
import sys
import textwrap

import httpx

LOCAL = textwrap.dedent("""
    import json, time
    import httpx, ray
    from ray import serve
    from llmctr.runtime import init_ray

    init_ray(num_cpus=1)
    node = ray._private.worker.global_worker.node
    assert ray.data.range(10).map(lambda r: {"id": r["id"] * 2}).sum("id") == 90

    @serve.deployment(ray_actor_options={"num_cpus": 0.1})
    class Echo:
        def __call__(self, request):
            return "echo"

    serve.run(Echo.bind(), route_prefix="/echo")
    answer = httpx.get("http://127.0.0.1:8000/echo", timeout=30).text
    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient
    apps = ServeSubmissionClient("http://" + node.address_info["webui_url"]).get_serve_details()["applications"]
    print(json.dumps({"gcs": ray.get_runtime_context().gcs_address, "dashboard": node.address_info["webui_url"],
                      "answer": answer, "apps": sorted(apps)}), flush=True)
    input()  # stay up until the test has tried to get in
    serve.shutdown()
""")
STRANGER = "import ray, sys; ray.init(address=sys.argv[1]); print('joined')"


def test_local_cluster_refuses_a_client_without_the_token(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env["RAY_SERVE_ENABLE_HA_PROXY"] = "0"  # the fixed HAProxy stats ports may be held by another test's Serve
    local = subprocess.Popen([sys.executable, "-c", LOCAL], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        seen = json.loads(local.stdout.readline())
        assert seen["answer"] == "echo" and "default" in seen["apps"]
        # A stranger: no token in its environment and none at a path of its own.
        stranger_env = {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(tmp_path / "none"),
                        "HOME": str(tmp_path)}
        (tmp_path / "none").write_text("not-the-token\n")
        out = subprocess.run([sys.executable, "-c", STRANGER, seen["gcs"]], env=stranger_env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode != 0 and "joined" not in out.stdout
        assert httpx.get(f"http://{seen['dashboard']}/api/jobs/", timeout=10).status_code == 401
    finally:
        local.communicate("\n", timeout=120)
