"""Notebook parameters (widgets vs the parameters cell), secrets, and the workspace-side guards."""
from __future__ import annotations

from pathlib import Path

import pytest

from fitbit_lakehouse.config import load_settings
from fitbit_lakehouse.params import LocalDbutils, LocalSecrets, read_params, split_params, typed_like

ROOT = Path(__file__).resolve().parents[2]


def settings(**overrides):
    return load_settings(env="local", conf_dir=ROOT / "conf", environ={}).with_overrides(**overrides)


def test_without_dbutils_the_cell_values_are_the_parameters():
    assert read_params(lake_dir="", limit=None, replay=False) == {"lake_dir": "", "limit": None, "replay": False}


def test_widgets_win_over_the_cell_and_are_typed_like_it():
    dbutils = LocalDbutils({"lake_dir": "/lake/w", "limit": "25", "replay": "true", "speed": "2.5"})
    params = read_params(dbutils, lake_dir="", limit=None, replay=False, speed=None, file_filter="dailyActivity")
    assert params == {"lake_dir": "/lake/w", "limit": 25, "replay": True, "speed": 2.5,
                      "file_filter": "dailyActivity"}   # no widget pushed: the cell's value is the default


def test_typed_like():
    assert typed_like("", None) is None and typed_like("", "") == ""
    assert typed_like("false", False) is False and typed_like("TRUE", None) is True
    assert typed_like("7", 0) == 7 and typed_like("2016-04-12", "") == "2016-04-12"
    with pytest.raises(ValueError):
        typed_like("maybe", False)


def test_job_parameters_become_settings_and_the_rest_step_arguments():
    overrides, step = split_params({"lake_dir": "/l", "bootstrap_servers": "b:1", "start_date": "2016-04-12"})
    assert overrides == {"paths.lake_dir": "/l", "kafka.bootstrap_servers": "b:1"}
    assert step == {"start_date": "2016-04-12"}


def test_notebook_settings_read_the_widgets(monkeypatch):
    from fitbit_lakehouse import params, pipeline

    widgets = LocalDbutils({"lake_dir": "/tmp/widget-lake", "bootstrap_servers": "kafka.example:9093",
                            "schema_prefix": "fitbit_alice", "start_date": "2016-04-12"})
    monkeypatch.setattr(params, "active_dbutils", lambda: widgets)
    config, step = pipeline.notebook_settings(lake_dir="", bootstrap_servers="", schema_prefix="",
                                              start_date="", end_date="")
    assert str(config.lake_dir) == "/tmp/widget-lake"
    assert config.bootstrap_servers == "kafka.example:9093"
    assert config.get("storage.schema_prefix") == "fitbit_alice"
    assert step == {"start_date": "2016-04-12", "end_date": ""}


def test_secrets_from_the_environment_locally():
    secrets = LocalSecrets({"FITBIT_SECRET_FITBIT_KAFKA_PASSWORD": "s3cret"})
    assert secrets.get("fitbit", "kafka_password") == "s3cret"
    with pytest.raises(ValueError, match="FITBIT_SECRET_FITBIT_USER_KEY_SECRET"):
        secrets.get("fitbit", "user_key_secret")


def test_user_key_secret_comes_from_the_scope_and_a_workspace_never_uses_the_dev_one(monkeypatch):
    from fitbit_lakehouse import params
    from fitbit_lakehouse.privacy import PrivacyError, user_key_secret

    monkeypatch.delenv("FITBIT_USER_KEY_SECRET", raising=False)
    monkeypatch.setattr(params, "active_dbutils",
                        lambda: LocalDbutils({}, environ={"FITBIT_SECRET_FITBIT_USER_KEY_SECRET": "from-scope"}))
    assert user_key_secret(settings()) == "from-scope"
    monkeypatch.setattr(params, "active_dbutils", lambda: LocalDbutils({}, environ={}))
    workspace = load_settings(env="workspace", conf_dir=ROOT / "conf", environ={})
    with pytest.raises(PrivacyError, match="secret scope 'fitbit', key 'user_key_secret'"):
        user_key_secret(workspace)


def test_without_a_secret_each_lake_gets_its_own_random_one(monkeypatch, tmp_path):
    import stat

    from fitbit_lakehouse import params
    from fitbit_lakehouse.privacy import user_key_secret

    monkeypatch.delenv("FITBIT_USER_KEY_SECRET", raising=False)
    monkeypatch.setattr(params, "active_dbutils", lambda: None)
    lake_a = load_settings(env="local", conf_dir=ROOT / "conf", environ={"FITBIT_LAKE_DIR": str(tmp_path / "a")})
    lake_b = load_settings(env="local", conf_dir=ROOT / "conf", environ={"FITBIT_LAKE_DIR": str(tmp_path / "b")})
    first = user_key_secret(lake_a)
    assert len(first) >= 32 and user_key_secret(lake_a) == first        # stable for the lake ...
    assert user_key_secret(lake_b) != first                             # ... and nobody else's
    secret_file = tmp_path / "a" / lake_a.get("privacy.lake_secret_file")
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    monkeypatch.setenv("FITBIT_USER_KEY_SECRET", "chosen")
    assert user_key_secret(lake_a) == "chosen"


def test_a_lake_refuses_a_user_key_secret_other_than_the_one_of_its_keys(monkeypatch, tmp_path, capsys, cli_signals):
    """FITBIT_USER_KEY_SECRET set after a lake's first run (as the generated-secret warning suggests): the
    users seen from then on would get keys of another secret than the stored ones, without a word. The
    run stops in one line before anything starts; the lake's own secret goes on."""
    from fitbit_lakehouse import __main__ as cli
    from fitbit_lakehouse import params
    from fitbit_lakehouse.privacy import PrivacyError, remember_secret, require_the_lakes_secret, user_key_secret

    monkeypatch.delenv("FITBIT_USER_KEY_SECRET", raising=False)
    monkeypatch.setattr(params, "active_dbutils", lambda: None)
    lake = tmp_path / "lake"
    settings = load_settings(env="local", conf_dir=ROOT / "conf", environ={"FITBIT_LAKE_DIR": str(lake)})
    generated = user_key_secret(settings)
    monkeypatch.setenv("FITBIT_USER_KEY_SECRET", "chosen later")
    assert user_key_secret(settings) == "chosen later"   # no key written yet: any secret may still be chosen
    monkeypatch.delenv("FITBIT_USER_KEY_SECRET")
    remember_secret(settings, generated)   # what silver does before it writes the first user key
    assert user_key_secret(settings) == generated
    monkeypatch.setenv("FITBIT_USER_KEY_SECRET", "chosen later")
    message = (f"The user-key secret given is not the one the user keys of {lake} were made with: give that one "
               f"again (FITBIT_USER_KEY_SECRET, or unset it if the lake generated its own), or start a lake with new "
               f"keys (make clean-lake, or another FITBIT_LAKE_DIR).")
    for check in (user_key_secret, require_the_lakes_secret):
        with pytest.raises(PrivacyError) as failure:
            check(settings)
        assert str(failure.value) == message
    monkeypatch.setenv("FITBIT_USER_KEY_SECRET", generated)   # the same secret, given: taken
    assert user_key_secret(settings) == generated

    monkeypatch.setenv("FITBIT_USER_KEY_SECRET", "chosen later")
    _no_broker_may_start(monkeypatch)
    (tmp_path / "raw").mkdir()
    monkeypatch.setenv("FITBIT_RAW_DIR", str(tmp_path / "raw"))
    monkeypatch.setenv("FITBIT_LAKE_DIR", str(lake))
    for command in (["run"], ["produce"], ["steps", "bronze,silver"], ["stream"]):
        assert cli.main(command) == 2
        assert capsys.readouterr().err == f"error: {message}\n"


def test_a_lake_from_before_the_fingerprint_is_told_by_its_stored_keys(spark, monkeypatch, tmp_path):
    from fitbit_lakehouse import params
    from fitbit_lakehouse.privacy import PrivacyError, user_key, user_key_secret
    from fitbit_lakehouse.silver import IDENTITY, require_the_identities_secret
    from fitbit_lakehouse.tables import Lake

    monkeypatch.setattr(params, "active_dbutils", lambda: None)
    monkeypatch.setenv("FITBIT_USER_KEY_SECRET", "the first")
    settings = load_settings(env="local", conf_dir=ROOT / "conf", environ={"FITBIT_LAKE_DIR": str(tmp_path / "lake")})
    lake = Lake(spark, settings)
    require_the_identities_secret(lake, settings)   # no identities yet: nothing to tell
    lake.append(spark.createDataFrame([(1503960366, user_key(1503960366, "the first"))],
                                      "fitbit_id bigint, user_key string"), "silver", IDENTITY)
    monkeypatch.setenv("FITBIT_USER_KEY_SECRET", "another")
    with pytest.raises(PrivacyError, match="^The user-key secret given is not the one the user keys of"):
        require_the_identities_secret(lake, settings)
    monkeypatch.setenv("FITBIT_USER_KEY_SECRET", "the first")
    require_the_identities_secret(lake, settings)   # the same: taken, and its fingerprint kept from now on
    monkeypatch.setenv("FITBIT_USER_KEY_SECRET", "another")
    with pytest.raises(PrivacyError):
        user_key_secret(settings)


def test_a_published_secret_is_refused_unless_allowed(monkeypatch, tmp_path):
    from fitbit_lakehouse import params
    from fitbit_lakehouse.privacy import PrivacyError, user_key_secret

    monkeypatch.setattr(params, "active_dbutils", lambda: None)
    settings = load_settings(env="local", conf_dir=ROOT / "conf", environ={"FITBIT_LAKE_DIR": str(tmp_path)})
    published = settings.get("privacy.public_secrets")[0]
    monkeypatch.setenv("FITBIT_USER_KEY_SECRET", published)
    with pytest.raises(PrivacyError, match="published"):
        user_key_secret(settings)
    assert user_key_secret(settings.with_overrides(**{"privacy.allow_public_secret": True})) == published


def test_sasl_options_for_both_clients_from_the_secrets(monkeypatch):
    from fitbit_lakehouse.kafka_broker import BrokerError, client_options, spark_options

    sasl = settings(**{"kafka.security_protocol": "SASL_SSL", "kafka.sasl_mechanism": "SCRAM-SHA-512",
                       "kafka.ssl_cafile": "/etc/ca.pem"})
    with pytest.raises(BrokerError, match="FITBIT_SECRET_FITBIT_KAFKA_USERNAME"):
        client_options(sasl)
    monkeypatch.setenv("FITBIT_SECRET_FITBIT_KAFKA_USERNAME", "fitbit")
    monkeypatch.setenv("FITBIT_SECRET_FITBIT_KAFKA_PASSWORD", 'p"w')
    assert client_options(sasl) == {"security_protocol": "SASL_SSL", "ssl_cafile": "/etc/ca.pem",
                                    "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "fitbit",
                                    "sasl_plain_password": 'p"w'}
    options = spark_options(sasl.with_overrides(**{"kafka.shaded_class_prefix": "kafkashaded."}))
    assert options["kafka.security.protocol"] == "SASL_SSL"
    assert options["kafka.ssl.truststore.location"] == "/etc/ca.pem"
    assert options["kafka.sasl.jaas.config"] == ('kafkashaded.org.apache.kafka.common.security.scram.'
                                                 'ScramLoginModule required username="fitbit" password="p\\"w";')
    assert spark_options(settings()) == {"kafka.security.protocol": "PLAINTEXT"}


def test_a_cluster_never_starts_a_broker_and_names_the_variable():
    from fitbit_lakehouse.kafka_broker import BrokerError, ensure_broker

    workspace = load_settings(env="workspace", conf_dir=ROOT / "conf", environ={})
    with pytest.raises(BrokerError, match="bundle variable kafka_bootstrap_servers"):
        ensure_broker(workspace.with_overrides(**{"kafka.bootstrap_servers": "localhost:1"}))


def test_an_empty_raw_folder_is_an_error_where_synthetic_data_was_not_asked_for(tmp_path):
    from fitbit_lakehouse.produce import NoInput, resolve_raw_dir

    workspace = load_settings(env="workspace", conf_dir=ROOT / "conf", environ={}).with_overrides(
        **{"paths.raw_dir": str(tmp_path / "raw"), "paths.lake_dir": str(tmp_path / "lake")})
    (tmp_path / "raw").mkdir()
    with pytest.raises(NoInput, match="synthetic=true"):
        resolve_raw_dir(workspace)
    raw_dir, synthetic = resolve_raw_dir(workspace.with_overrides(**{"synthetic.days": 1, "synthetic.users": 1}),
                                         synthetic_when_empty=True)
    assert synthetic and any(raw_dir.glob("**/*.csv"))


def _parameters_cell(notebook: str) -> dict:
    import json

    cells = json.loads((ROOT / "notebooks" / notebook).read_text())["cells"]
    source = next("".join(c["source"]) for c in cells if c["cell_type"] == "code" and "raw_dir =" in "".join(c["source"]))
    values: dict = {}
    exec(source, {}, values)   # the parameters cell holds plain assignments
    return values


def test_produce_leaves_synthetic_data_to_conf_unless_a_parameter_asks(tmp_path, monkeypatch):
    """`make run` (no widgets) on an empty raw folder replays the synthetic data set where conf allows
    it; the producer job's `synthetic` widget decides on Databricks and under `make job`."""
    from fitbit_lakehouse import produce
    from fitbit_lakehouse.catalogue import SourceScan

    cell = _parameters_cell("01_produce.ipynb")
    generated = []
    monkeypatch.setattr(produce, "scan_sources", lambda path: SourceScan())   # no Fitbit CSV anywhere

    (tmp_path / "empty").mkdir()

    def resolved(synthetic):
        local = settings(**{"paths.raw_dir": str(tmp_path / "empty"), "paths.lake_dir": str(tmp_path / "lake")})
        monkeypatch.setattr("fitbit_lakehouse.synthetic.generate", lambda target, **kw: generated.append(target))
        try:
            return produce.resolve_raw_dir(local, synthetic)[1]
        except produce.NoInput:
            return "refused"

    assert resolved(read_params(**cell)["synthetic"]) is True                                  # make run
    assert resolved(read_params(LocalDbutils({"synthetic": ""}), **cell)["synthetic"]) is True   # widget left empty
    assert resolved(read_params(LocalDbutils({"synthetic": "false"}), **cell)["synthetic"]) == "refused"
    assert generated


def test_a_raw_folder_that_does_not_exist_is_an_error_not_the_synthetic_data(tmp_path):
    """FITBIT_RAW_DIR mistyped: one line that names the folder, rather than gold from synthetic data;
    unless the synthetic data set was asked for by name."""
    from fitbit_lakehouse.produce import NoInput, resolve_raw_dir

    local = settings(**{"paths.raw_dir": str(tmp_path / "no-such-folder"), "paths.lake_dir": str(tmp_path / "lake"),
                        "synthetic.days": 1, "synthetic.users": 1})
    assert local.get("producer.synthetic_when_empty")   # conf allows it for an empty folder, locally
    with pytest.raises(NoInput, match="no-such-folder does not exist") as failure:
        resolve_raw_dir(local)
    assert "\n" not in str(failure.value)
    assert resolve_raw_dir(local, synthetic_when_empty=True)[1]


def _no_broker_may_start(monkeypatch) -> None:
    """The run must stop before it starts a broker: starting one fails the test."""
    from fitbit_lakehouse import kafka_broker

    def no_broker(*args, **kwargs):
        raise AssertionError("a broker was started for a run that should have stopped before")

    monkeypatch.setattr(kafka_broker, "ensure_broker", no_broker)


def test_make_run_and_produce_on_a_raw_folder_that_does_not_exist_stop_before_starting_anything(
        tmp_path, monkeypatch, capsys, cli_signals):
    from fitbit_lakehouse import __main__ as cli

    _no_broker_may_start(monkeypatch)
    monkeypatch.setenv("FITBIT_RAW_DIR", str(tmp_path / "typo"))
    monkeypatch.setenv("FITBIT_LAKE_DIR", str(tmp_path / "lake"))
    for command in (["run"], ["produce"]):
        assert cli.main(command) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "typo does not exist" in err, err


def test_a_raw_folder_with_the_kaggle_zip_but_no_csv_says_unzip_it(tmp_path, monkeypatch, capsys, cli_signals):
    """The Kaggle download is a zip: a folder that holds it and no CSV is real data not unzipped, not an
    empty folder for the synthetic data set."""
    import zipfile

    from fitbit_lakehouse import __main__ as cli
    from fitbit_lakehouse.produce import NoInput, resolve_raw_dir

    raw = tmp_path / "raw"
    raw.mkdir()
    with zipfile.ZipFile(raw / "archive.zip", "w") as archive:
        archive.writestr("mturkfitbit_export_4.12.16-5.12.16/Fitabase Data 4.12.16-5.12.16/dailyActivity_merged.csv",
                         "Id,ActivityDate,TotalSteps\n1503960366,4/12/2016,13162\n")
    local = settings(**{"paths.raw_dir": str(raw), "paths.lake_dir": str(tmp_path / "lake"),
                        "synthetic.days": 1, "synthetic.users": 1})
    with pytest.raises(NoInput) as failure:
        resolve_raw_dir(local)
    assert str(failure.value) == (f"{raw} holds archive.zip but no Fitbit CSV: unzip it there (the Kaggle download "
                                  f"is a zip of the month folders), or point FITBIT_RAW_DIR at the folder it "
                                  f"unzips to.")
    assert resolve_raw_dir(local, synthetic_when_empty=True)[1]   # the synthetic data set asked for by name
    monkeypatch.setenv("FITBIT_RAW_DIR", str(raw))   # make run says it before anything starts
    monkeypatch.setenv("FITBIT_LAKE_DIR", str(tmp_path / "lake"))
    assert cli.main(["run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds archive.zip but no Fitbit CSV: unzip it there" in err, err
    with zipfile.ZipFile(raw / "archive.zip") as archive:
        archive.extractall(raw)
    assert resolve_raw_dir(local) == (raw, False)   # unzipped beside the zip: the real data


def test_a_raw_folder_whose_csvs_all_have_other_names_says_what_the_names_are(tmp_path):
    """Renamed files (dailyActivity.csv) are not an empty folder: the user meant real data."""
    from fitbit_lakehouse.produce import NoInput, resolve_raw_dir

    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "dailyActivity.csv").write_text("Id,ActivityDate,TotalSteps\n1503960366,4/12/2016,13162\n")
    local = settings(**{"paths.raw_dir": str(raw), "paths.lake_dir": str(tmp_path / "lake")})
    with pytest.raises(NoInput) as failure:
        resolve_raw_dir(local)
    assert str(failure.value) == (f"{raw} holds 1 CSV file(s) but none named as a Fitbit file (e.g. "
                                  f"dailyActivity.csv): the Kaggle files are named like dailyActivity_merged.csv; "
                                  f"give them their Kaggle names, or point FITBIT_RAW_DIR at the folder of the "
                                  f"Kaggle files.")
    (raw / "dailyActivity.csv").rename(raw / "dailyActivity_merged.csv")
    assert resolve_raw_dir(local) == (raw, False)


def test_a_raw_folder_that_is_a_file_says_so(tmp_path):
    """FITBIT_RAW_DIR set to one of the CSVs, not to its folder: not the synthetic data set."""
    from fitbit_lakehouse.produce import NoInput, resolve_raw_dir

    (tmp_path / "sleepDay_merged.csv").write_text("Id,SleepDay,TotalSleepRecords,TotalMinutesAsleep,TotalTimeInBed\n")
    local = settings(**{"paths.raw_dir": str(tmp_path / "sleepDay_merged.csv"), "paths.lake_dir": str(tmp_path / "lake")})
    with pytest.raises(NoInput) as failure:
        resolve_raw_dir(local)
    assert str(failure.value) == (f"The raw folder {tmp_path / 'sleepDay_merged.csv'} is a file, not a folder: set "
                                  f"FITBIT_RAW_DIR (or the raw_dir parameter) to the folder that holds the Kaggle CSVs.")


def test_a_raw_folder_whose_fitbit_files_all_link_out_of_it_says_so(tmp_path):
    """Links out of the raw folder are not read (a linked file or a linked month folder). When they are
    all it holds, the user meant those files: one line, not the synthetic data set."""
    from fitbit_lakehouse.catalogue import scan_sources
    from fitbit_lakehouse.produce import NoInput, resolve_raw_dir

    kaggle = tmp_path / "downloads" / "Fitabase Data 4.12.16-5.12.16"
    kaggle.mkdir(parents=True)
    (kaggle / "dailyActivity_merged.csv").write_text("Id,ActivityDate,TotalSteps\n1503960366,4/12/2016,13162\n")
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "Fitabase Data 4.12.16-5.12.16").symlink_to(kaggle, target_is_directory=True)
    local = settings(**{"paths.raw_dir": str(raw), "paths.lake_dir": str(tmp_path / "lake")})
    with pytest.raises(NoInput) as failure:
        resolve_raw_dir(local)
    assert str(failure.value) == (f"{raw} holds no Fitbit CSV of its own: Fitabase Data 4.12.16-5.12.16 links to "
                                  f"{kaggle}, outside it, and links out of the raw folder are not read. Point "
                                  f"FITBIT_RAW_DIR at the folder the links lead to, or copy the files in.")
    (raw / "Fitabase Data 4.12.16-5.12.16").unlink()
    (raw / "dailyActivity_merged.csv").symlink_to(kaggle / "dailyActivity_merged.csv")
    with pytest.raises(NoInput, match="dailyActivity_merged.csv links to .*downloads"):
        resolve_raw_dir(local)
    local = settings(**{"paths.raw_dir": str(kaggle.parent), "paths.lake_dir": str(tmp_path / "lake")})
    assert resolve_raw_dir(local) == (kaggle.parent, False)   # where the links lead: read
    (kaggle / "linked").symlink_to(raw, target_is_directory=True)   # a linked folder among real files: refused
    assert scan_sources(kaggle.parent).outside == [kaggle / "linked"]


def test_a_lake_of_one_data_set_refuses_the_other(tmp_path, monkeypatch, capsys, cli_signals):
    """The first `make run` (an empty data/raw) builds the lake on the synthetic data set; the Kaggle
    files unzipped afterwards would be mixed with it in gold without a word. Either way round: one line
    that says what to do, before a broker starts."""
    from fitbit_lakehouse import __main__ as cli
    from fitbit_lakehouse.produce import LakeDataSet, MixedDataSets, resolve_raw_dir

    raw, lake = tmp_path / "raw", tmp_path / "lake"
    raw.mkdir()
    local = settings(**{"paths.raw_dir": str(raw), "paths.lake_dir": str(lake), "synthetic.days": 1,
                        "synthetic.users": 1})
    synthetic_dir, synthetic = resolve_raw_dir(local)
    assert synthetic
    LakeDataSet(local).record(True, synthetic_dir)   # what a produce step does once it has resolved its input
    (raw / "dailyActivity_merged.csv").write_text("Id,ActivityDate,TotalSteps\n1503960366,4/12/2016,13162\n")
    with pytest.raises(MixedDataSets) as failure:
        resolve_raw_dir(local)
    assert str(failure.value) == (f"The lake {lake} holds the synthetic data set of an earlier run: the files in {raw} "
                                  f"would be mixed with it in gold. Start a fresh lake for them: `make clean-lake` "
                                  f"(deletes the tables, keeps the CSVs), or set FITBIT_LAKE_DIR to a new folder.")

    _no_broker_may_start(monkeypatch)
    monkeypatch.setenv("FITBIT_RAW_DIR", str(raw))
    monkeypatch.setenv("FITBIT_LAKE_DIR", str(lake))
    for command in (["run"], ["produce"]):
        assert cli.main(command) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "holds the synthetic data set of an earlier run" in err, err

    other = settings(**{"paths.raw_dir": str(raw), "paths.lake_dir": str(tmp_path / "real_lake")})
    LakeDataSet(other).record(False, raw)                  # a lake of the user's files ...
    assert resolve_raw_dir(other) == (raw, False)          # ... goes on with them
    (raw / "dailyActivity_merged.csv").unlink()            # ... and refuses the synthetic data set
    with pytest.raises(MixedDataSets, match=f"holds the Fitbit files of {raw}, and {raw} holds none"):
        resolve_raw_dir(other)


def test_a_lake_sent_into_before_it_kept_its_data_set_is_told_by_its_synthetic_folder(tmp_path):
    """Lakes of earlier versions have a ledger but no data_set.json: the synthetic data set is generated
    under the lake when a run uses it, so its files there tell such a lake apart."""
    from fitbit_lakehouse.produce import LakeDataSet, MixedDataSets, resolve_raw_dir
    from fitbit_lakehouse.synthetic import generate

    raw, lake = tmp_path / "raw", tmp_path / "lake"
    raw.mkdir()
    (raw / "dailyActivity_merged.csv").write_text("Id,ActivityDate,TotalSteps\n1503960366,4/12/2016,13162\n")
    local = settings(**{"paths.raw_dir": str(raw), "paths.lake_dir": str(lake)})
    assert LakeDataSet(local).held() is None                    # a fresh lake: nothing sent yet
    (lake / "_producer").mkdir(parents=True)
    (lake / "_producer" / "ledger.json").write_text("{}")
    assert LakeDataSet(local).held()["data_set"] == "files"     # sent into, no synthetic folder
    assert resolve_raw_dir(local) == (raw, False)
    generate(local.synthetic_dir, users=1, days=1, seed=3, heart_rate_users=0)
    with pytest.raises(MixedDataSets, match="holds the synthetic data set of an earlier run"):
        resolve_raw_dir(local)


def test_an_mlflow_server_that_does_not_answer_is_one_line_before_the_run_starts(
        tmp_path, monkeypatch, capsys, cli_signals):
    """MLFLOW_TRACKING_URI at a server that is down: MLflow would retry for minutes at the end of the run;
    the run says it in one line before a broker or Spark starts. A server that answers, and the SQLite
    store, pass."""
    import socket

    from fitbit_lakehouse import __main__ as cli
    from fitbit_lakehouse import kafka_broker
    from fitbit_lakehouse.config import ConfigError
    from fitbit_lakehouse.insights import require_tracking_server

    down = f"http://localhost:{kafka_broker.free_port()}"
    with pytest.raises(ConfigError) as failure:
        require_tracking_server(settings(**{"mlflow.tracking_uri": down, "mlflow.connect_timeout_s": 1}))
    assert str(failure.value) == (f"No MLflow tracking server answers at {down} (MLFLOW_TRACKING_URI): start it, or "
                                  f"unset MLFLOW_TRACKING_URI to keep the runs in the SQLite store under the lake.")
    with socket.create_server(("localhost", 0)) as server:
        require_tracking_server(settings(**{"mlflow.tracking_uri": f"http://localhost:{server.getsockname()[1]}"}))
    require_tracking_server(settings(**{"mlflow.tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}))

    _no_broker_may_start(monkeypatch)
    (tmp_path / "raw").mkdir()
    monkeypatch.setenv("FITBIT_RAW_DIR", str(tmp_path / "raw"))
    monkeypatch.setenv("FITBIT_LAKE_DIR", str(tmp_path / "lake"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", down)
    assert cli.main(["run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No MLflow tracking server answers at" in err, err
