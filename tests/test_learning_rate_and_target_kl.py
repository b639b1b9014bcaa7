"""CleanRL's learning-rate anneal and --target-kl, on tiny real runs: what is logged, and what Adam and the epoch loop
actually did."""
import numpy as np

from conftest import HOPPER_RUN, load_kl, run_script
from test_resume import scalars

LR = 3e-4  # --learning-rate's default, which HOPPER_RUN keeps
UPDATES = 10 * 4  # update_epochs x num_minibatches


def f32(x):
    return float(np.float32(x))  # TensorBoard keeps scalars in float32


def test_learning_rate_anneals_linearly_and_adam_takes_it(hopper_run, hopper_replay, tmp_path):
    _, constant = run_script(tmp_path, "constant", *HOPPER_RUN, "--no-anneal-lr")
    # CleanRL: lr = (1 - (iteration - 1) / num_iterations) x --learning-rate, here 2 iterations; constant without it
    assert scalars(hopper_run)["charts/learning_rate"] == [(128, f32(1.0 * LR)), (256, f32(0.5 * LR))]
    assert scalars(constant)["charts/learning_rate"] == [(128, f32(LR)), (256, f32(LR))]
    annealed, steady = load_kl(hopper_run), load_kl(constant)
    # iteration 1 runs at the full rate either way: the same run bit for bit
    for key in annealed[0]:
        np.testing.assert_array_equal(annealed[0][key], steady[0][key], err_msg=key)
    # iteration 2 starts from the same policy, rollout and Adam moments, so its first update takes the same Adam
    # direction in both runs, scaled by the rate Adam was given: the log-stds, weights themselves, move half as far
    np.testing.assert_array_equal(annealed[1]["states"], steady[1]["states"])
    np.testing.assert_array_equal(annealed[1]["means"][0], steady[1]["means"][0])
    moved, moved_at_full_rate = (f["logstds"][1].astype(np.float64) - f["logstds"][0] for f in (annealed[1], steady[1]))
    assert (np.abs(moved_at_full_rate) > 1e-6).all()
    np.testing.assert_allclose(moved, 0.5 * moved_at_full_rate, rtol=1e-4)  # float32 rounding of the weights
    # and all of iteration 2's updates are the replay's at CleanRL's rate (test_training_run replays every snapshot)
    assert [replayed.learning_rate for replayed in hopper_replay] == [1.0 * LR, 0.5 * LR]
    np.testing.assert_array_equal(annealed[1]["means"], hopper_replay[1].means)


def test_target_kl_stops_the_epochs_at_the_check_on_each_epochs_last_minibatch(hopper_run, hopper_replay, tmp_path):
    _, tiny = run_script(tmp_path, "tiny", *HOPPER_RUN, "--target-kl", "1e-9")
    _, large = run_script(tmp_path, "large", *HOPPER_RUN, "--target-kl", "1e9")
    # Without a target, epoch 0's approx_kl is 0 on its first minibatch (the policy has not moved yet) and above
    # 1e-9 from its second on: a check after every minibatch would stop after 2 updates, one on each epoch's first
    # minibatch after 8 (epoch 1's first). CleanRL checks the last minibatch's: it stops after epoch 0, 4 updates.
    approx_kl = hopper_replay[0].approx_kl
    assert approx_kl[0] <= 1e-9 < min(approx_kl[1:4])
    assert [v for _, v in scalars(tiny)["kl/num_updates"]] == [4, 4]
    for f in load_kl(tiny):
        assert int(f["num_updates"]) == 4 and len(f["seq_kl"]) == 4 and len(f["means"]) == 5
        np.testing.assert_array_equal(f["update"], np.arange(5))
        np.testing.assert_array_equal(f["epoch"], [0, 0, 0, 0])
        np.testing.assert_array_equal(f["minibatch"], [0, 1, 2, 3])
    # the target only stops: those 4 updates are the untargeted run's first 4, and the stats logged are those of
    # the minibatch the check read
    first = load_kl(tiny)[0]
    np.testing.assert_array_equal(first["means"], load_kl(hopper_run)[0]["means"][:5])
    assert scalars(tiny)["losses/approx_kl"][0] == (128, f32(approx_kl[3]))
    # a target never reached stops nothing: all epochs, and the run of no target bit for bit
    assert [v for _, v in scalars(large)["kl/num_updates"]] == [UPDATES, UPDATES]
    for a, b in zip(load_kl(large), load_kl(hopper_run), strict=True):
        assert int(a["num_updates"]) == UPDATES
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
