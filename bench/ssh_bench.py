#!/usr/bin/env python3
"""SSH: the time from `warren ssh ALIAS -- true` to its exit, logged in
(`warren login` done) and the account already made, next to plain `ssh` to
the same sshd (stdlib only; root: sshd and useradd).

One edge (https on 127.0.0.1, [auth] host, an `ssh` resource) and one agent
running the auth daemon on this host, a throwaway OpenSSH `sshd` on
127.0.0.1 trusting the edge's CA, asking `warren auth-daemon principals`.
Paths, in interleaved rounds, one invocation each per round:
  plain-ssh     `ssh -i KEY -o CertificateFile=CERT -p PORT ACCOUNT@127.0.0.1 true`,
                straight to sshd, with a certificate `warren sign-key` signed
                once (the floor: OpenSSH's own handshake and session)
  ssh-via-edge  the same ssh and certificate through `warren ssh --proxy`
                (TLS to the edge, the upgrade, the tunnel, the agent)
  warren-ssh    `warren ssh vm -- true`: a throwaway key, a certificate from
                the edge (the policy, the site's daemon, the CA), then the
                same path as ssh-via-edge
Measured: wall time of each process, ms (metric `login`).

  bench/ssh_bench.py --warren target/release/warren [--reps 15]
"""
import argparse, json, os, shutil, subprocess, sys, tempfile, time, urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Procs, Run, SampleError, api, free_port, run_meta, start_warren, tool_version, wait_port  # noqa: E402
import auth_bench  # noqa: E402
from https_bench import make_cert  # noqa: E402

PATHS = ["plain-ssh", "ssh-via-edge", "warren-ssh"]
EMAIL = auth_bench.EMAIL
SSH_OPTS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
            "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes"]


def timed(args, **kw):
    start = time.monotonic()
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, **kw)
    ms = (time.monotonic() - start) * 1000
    if out.returncode != 0:
        raise SampleError(f"{args[0]} exited {out.returncode}: {out.stderr.strip()[-300:]}")
    return {"ms": ms}


def cli_login(port, work, cert):
    """A `warren login` session file, confirmed with the browser session of
    auth_bench.sign_in (curl), as the device flow does."""
    jar = os.path.join(work, "auth.jar")
    host = auth_bench.AUTH_HOST

    def curl(url, *args):
        return auth_bench.curl(port, url, jar, *args)

    code, _, body = curl(f"https://{host}:{port}/cli/device", "-X", "POST")
    pair = json.loads(body)
    code, _, page = curl(f"https://{host}:{port}/device?code={pair['user_code']}")
    csrf = page.split('name="csrf" value="')[1].split('"')[0]
    data = urllib.parse.urlencode({"csrf": csrf, "code": pair["user_code"], "action": "approve"})
    code, _, _ = curl(f"https://{host}:{port}/device", "--data", data)
    if code != 200:
        raise SampleError(f"device confirmation refused ({code})")
    data = urllib.parse.urlencode({"grant_type": "device_code", "device_code": pair["device_code"]})
    code, _, body = curl(f"https://{host}:{port}/cli/token", "--data", data)
    tokens = json.loads(body)
    path = os.path.join(work, "login.json")
    with open(path, "w") as f:
        json.dump({"edge": f"https://{host}:{port}", "email": EMAIL, "access_token": tokens["access_token"],
                   "refresh_token": tokens["refresh_token"], "expires_ms": int(time.time() * 1000) + 3_000_000,
                   "ca": cert}, f)
    os.chmod(path, 0o600)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--warren", required=True)
    ap.add_argument("--reps", type=int, default=int(os.environ.get("REPS", 15)))
    args = ap.parse_args()
    exe = os.path.abspath(args.warren)
    params = {"reps": args.reps, "paths": PATHS}
    run = Run("ssh", run_meta(exe), params, {"warren": tool_version([exe, "--version"]),
                                             "ssh": tool_version(["ssh", "-V"])})
    work = tempfile.mkdtemp(prefix="warren-ssh-bench-")
    # sshd runs the principals command as nobody, which must read the state.
    os.chmod(work, 0o755)
    procs = Procs(work)
    state = os.path.join(work, "authd")
    try:
        measure(run, exe, work, procs, state, args)
    finally:
        procs.stop()
        try:
            with open(os.path.join(state, "state.json")) as f:
                for account in json.load(f)["accounts"].values():
                    subprocess.run(["userdel", "-r", account], capture_output=True)
        except (OSError, ValueError, KeyError):
            pass
        shutil.rmtree(work, ignore_errors=True)
    out = run.write()
    print(f"wrote {out}")
    sys.exit(1 if run.errors else 0)


def measure(run, exe, work, procs, state, args):
    https, sshd_port = free_port(), free_port()
    d = os.path.join(work, "warren-ssh")
    os.makedirs(d, exist_ok=True)
    cert, key = make_cert(d, (auth_bench.HOST, auth_bench.AUTH_HOST), end_entity=True)
    # The http resource only carries the browser sign-in; nothing answers behind it.
    backend = free_port()
    edge = start_warren(
        procs, exe, work, "warren-ssh", "tcp",
        edge_extra=f'https_listen = "127.0.0.1:{https}"\n[tls]\ncerts = [{{ cert = "{cert}", key = "{key}" }}]\n'
                   f'[auth]\nhost = "{auth_bench.AUTH_HOST}"\n',
        resources_toml=f'[[resource]]\nname = "web"\ntype = "http"\nhost = "{auth_bench.HOST}"\n'
                       f'targets = [{{ site = "bench", address = "127.0.0.1:{backend}" }}]\n'
                       f'[[resource]]\nname = "vm"\ntype = "ssh"\n'
                       f'targets = [{{ site = "bench", address = "127.0.0.1:{sshd_port}" }}]\n',
        allow=(f"127.0.0.1:{backend}/tcp", f"127.0.0.1:{sshd_port}/tcp"),
        agent_extra=("--ssh-auth-daemon", "--ssh-state-dir", state))
    wait_port(https)
    policy = f'[[grants]]\nsrc = ["{EMAIL}"]\ndst = ["web", "vm"]\n'
    for method, path, body in (("PUT", "/api/v1/policy", {"text": policy}),
                               ("POST", "/api/v1/users", {"email": EMAIL, "password": auth_bench.PASSWORD})):
        status, reply = api(edge["admin"], edge["token"], method, path, body)
        if status not in (200, 201):
            return run.abort(f"{method} {path}: {status} {reply}")
    status, ca = api(edge["admin"], edge["token"], "GET", "/api/v1/ssh/ca")
    sshd_dir = os.path.join(work, "sshd")
    os.makedirs(sshd_dir)
    os.makedirs("/run/sshd", exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{sshd_dir}/host"], check=True)
    with open(f"{sshd_dir}/ca.pub", "w") as f:
        f.write("\n".join(ca["trusted"]) + "\n")
    with open(f"{sshd_dir}/sshd_config", "w") as f:
        f.write(f"Port {sshd_port}\nListenAddress 127.0.0.1\nHostKey {sshd_dir}/host\nPidFile {sshd_dir}/pid\n"
                f"TrustedUserCAKeys {sshd_dir}/ca.pub\n"
                f"AuthorizedPrincipalsCommand {exe} auth-daemon principals --username %u --state-dir {state}\n"
                "AuthorizedPrincipalsCommandUser nobody\nAuthorizedKeysFile none\nPasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\nUsePAM yes\nStrictModes no\n")
    procs.start("sshd", ["/usr/sbin/sshd", "-D", "-e", "-f", f"{sshd_dir}/sshd_config"])
    wait_port(sshd_port)
    auth_bench.sign_in(https, work)
    login = cli_login(https, work, cert)
    session = ["--login-file", login, "--connect", f"127.0.0.1:{https}"]
    # The account is made by the first sign; the key for the plain paths.
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{work}/id"], check=True)
    out = subprocess.run([exe, "sign-key", "--resource", "vm", "--key-file", f"{work}/id.pub", *session],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return run.abort(f"sign-key: {out.stderr}")
    account = out.stderr.split("log in as ")[1].split(";")[0]
    key = ["-i", f"{work}/id", "-o", f"CertificateFile={work}/id-cert.pub", *SSH_OPTS]
    proxy = f"{exe} ssh --proxy --login-file {login} --connect 127.0.0.1:{https} %n"
    # warren ssh sets IdentitiesOnly itself; the other options are passed on.
    passed_on = [x for o in SSH_OPTS[1::2] if "Identities" not in o for x in ("-o", o)]
    cmds = {
        "plain-ssh": ["ssh", *key, "-p", str(sshd_port), f"{account}@127.0.0.1", "true"],
        "ssh-via-edge": ["ssh", *key, "-o", f"ProxyCommand={proxy}", "-l", account, "vm", "true"],
        "warren-ssh": [exe, "ssh", *session, *passed_on, "vm", "--", "true"],
    }
    for rnd in range(1, args.reps + 1):
        for p in PATHS:
            # A certificate lives 5 minutes: the plain paths' is renewed between rounds.
            if p == "plain-ssh" and rnd % 10 == 0:
                subprocess.run([exe, "sign-key", "--resource", "vm", "--key-file", f"{work}/id.pub", *session],
                               capture_output=True, check=True)
            run.measure(rnd, p, "login", lambda: timed(cmds[p]), procs)


if __name__ == "__main__":
    main()
