"""Auth suite: what a signed-in request costs over a public one, on the same
edge, agent and backend (23-byte body):
  warren-public     https://localhost/pub/  (auth = "public": no session check)
  warren-public-bytes  the public path carrying the same bytes as a signed-in
                    request: the session cookie (ignored there) and a header the size
                    of the identity the edge sends the origin (IDENTITY_BYTES)
  warren-signed-in  https://localhost/      behind a login, with a live session cookie:
                    signature, expiry, host, the user in the catalog, the policy's
                    decision, identity headers and the signed assertion (cached)

The session is made the way a browser makes it (curl through the sign-in
host: form, CSRF token, password, hand-off), then wrk and oha send its cookie.
Metrics, in interleaved rounds: keep-alive req/s and p50/p99 with wrk -c64,
and p50/p99 at a fixed rate of half the public path's median peak (oha)."""
import os, re, statistics, subprocess, tempfile, urllib.parse

from common import SampleError, api, backends, run_tool, start_warren, wait_port, wrk
from https_bench import make_cert, oha_fixed_rate, HOST

PATHS = ["warren-public", "warren-public-bytes", "warren-signed-in"]
# What the edge adds to a signed-in request towards the origin (Remote-User,
# -Email, -Name, -Groups and the ES256 assertion), about this many bytes.
IDENTITY_BYTES = 700
AUTH_HOST = "auth.localhost"
EMAIL, PASSWORD = "bench@example.com", "bench-password-123"


def curl(port, url, jar, *args):
    out = subprocess.run(["curl", "-sS", "-k", "--max-time", "20", "-b", jar, "-c", jar,
                          "--resolve", f"{AUTH_HOST}:{port}:127.0.0.1", "--resolve", f"{HOST}:{port}:127.0.0.1",
                          "-o", "/dev/stdout", "-w", "\n%{http_code} %{redirect_url}", *args, url],
                         capture_output=True, text=True, timeout=30)
    body, _, tail = out.stdout.rpartition("\n")
    code, _, location = tail.partition(" ")
    return int(code or 0), location, body


def sign_in(port, work):
    """The session cookie's value, made through the sign-in pages."""
    jar = os.path.join(work, "auth.jar")
    code, login, _ = curl(port, f"https://{HOST}:{port}/", jar, "-H", "Accept: text/html")
    if code != 302:
        raise SampleError(f"expected a redirect to sign in, got {code}")
    code, _, form = curl(port, login, jar)
    fields = dict(re.findall(r'name="(csrf|rd|st)" value="([^"]*)"', form))
    if code != 200 or len(fields) != 3:
        raise SampleError(f"no sign-in form ({code})")
    data = urllib.parse.urlencode({"csrf": fields["csrf"], "rd": fields["rd"].replace("&amp;", "&"), "st": fields["st"],
                                   "email": EMAIL, "password": PASSWORD})
    code, handoff, _ = curl(port, f"https://{AUTH_HOST}:{port}/login", jar, "--data", data)
    if code != 303:
        raise SampleError(f"sign-in refused ({code})")
    code, _, _ = curl(port, handoff, jar)
    with open(jar) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 7 and parts[5] == "__Host-warren_session":
                return parts[6]
    raise SampleError(f"no session cookie after the hand-off ({code})")


def run(run, args, procs, work):
    _, backend = backends(procs, work)
    https = __import__("common").free_port()
    d = os.path.join(work, "warren-auth")
    os.makedirs(d, exist_ok=True)
    cert, key = os.path.join(d, "tls.crt"), os.path.join(d, "tls.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", f"/CN={HOST}",
                    "-addext", f"subjectAltName=DNS:{HOST},DNS:{AUTH_HOST}",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    target = f'targets = [{{ site = "bench", address = "127.0.0.1:{backend}" }}]\n'
    edge = start_warren(
        procs, args.warren, work, "warren-auth", "tcp",
        edge_extra=f'https_listen = "127.0.0.1:{https}"\n[tls]\ncerts = [{{ cert = "{cert}", key = "{key}" }}]\n'
                   f'[auth]\nhost = "{AUTH_HOST}"\n',
        resources_toml=f'[[resource]]\nname = "web"\ntype = "http"\nhost = "{HOST}"\n{target}'
                       f'[[resource]]\nname = "pub"\ntype = "http"\nhost = "{HOST}"\npath = "/pub"\nauth = "public"\n{target}',
        allow=(f"127.0.0.1:{backend}/tcp",))
    wait_port(https)
    policy = f'[[grants]]\nsrc = ["{EMAIL}"]\ndst = ["web"]\n'
    for method, path, body in (("PUT", "/api/v1/policy", {"text": policy}),
                               ("POST", "/api/v1/users", {"email": EMAIL, "password": PASSWORD})):
        status, reply = api(edge["admin"], edge["token"], method, path, body)
        if status not in (200, 201):
            return run.abort(f"{method} {path}: {status} {reply}")
    cookie = sign_in(https, work)
    urls = {"warren-public": (f"https://{HOST}:{https}/pub/", []),
            "warren-public-bytes": (f"https://{HOST}:{https}/pub/", ["-H", f"Cookie: __Host-warren_session={cookie}",
                                                                     "-H", "X-Pad: " + "p" * IDENTITY_BYTES]),
            "warren-signed-in": (f"https://{HOST}:{https}/", ["-H", f"Cookie: __Host-warren_session={cookie}"])}
    d = args.duration
    for rnd in range(1, args.reps + 1):
        for p in PATHS:
            url, headers = urls[p]
            run.measure(rnd, p, "keepalive", lambda: wrk(url, d, 64, headers=headers), procs)
        try:
            procs.check()
        except SampleError as e:
            return run.abort(f"stopped after round {rnd}: {e}")
    peaks = [s["values"]["rps"] for s in run.samples
             if s["path"] == "warren-public" and s["metric"] == "keepalive" and s["values"]]
    if not peaks:
        return run.abort("no keep-alive sample for warren-public")
    rate = statistics.median(peaks) / 2
    for rnd in range(1, args.reps + 1):
        for p in PATHS:
            url, headers = urls[p]
            run.measure(rnd, p, "half_load", lambda: oha_fixed_rate(args.oha, None, d, rate, url=url, headers=headers), procs)
