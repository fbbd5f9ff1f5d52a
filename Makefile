# liid: `make all` runs the whole pipeline on the embedded demo; `make test` runs the tests.
# Each pipeline target is a stage's manifest.json, so a second `make all` skips what is unchanged
# and a changed stage YAML reruns only that stage and what depends on it (the stage runner also
# skips a stage whose inputs, config and code are unchanged).

PYTHON ?= python3
VENV := .venv
LIID := $(VENV)/bin/liid
STAMP := $(VENV)/.installed
DATA ?= data/demo
RUN ?= runs/demo
GT_RUN ?= runs/demo-gt
PROFILE ?= demo
WORKERS ?= 2
SEED ?= 0
ARGS := --run $(RUN) --profile $(PROFILE) --seed $(SEED)
GT_ARGS := --run $(GT_RUN) --profile $(PROFILE) --seed $(SEED)
TRAIN_INDEX := $(DATA)/index_train.json
VAL_INDEX := $(DATA)/index_val.json
SRC := $(shell find src -name '*.py' 2>/dev/null)
M := manifest.json
DEMO_TRAIN ?= 300

.PHONY: all test help env pipeline upper-bound report ablation baselines real real-train learning-curve demo-curve box2mask box2mask-real results clean

help:  ## List the targets.
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

env: $(STAMP)  ## Create .venv and install liid with its test extras.

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	@touch $@

test: $(STAMP)  ## Lint, then the test suite (includes every stage end to end on a tiny demo set).
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/python -m pytest -q

all: $(STAMP) report  ## Every stage on the demo data into runs/demo, the upper bound, report.html.

# The data set: the embedded demo, or your own (make real COCO=... IMAGES=... / FOLDER=... LABELS=...).
ifneq ($(COCO),)
$(TRAIN_INDEX): $(COCO) | $(STAMP)
	$(LIID) data coco --annotations $(COCO) --images $(IMAGES) --out $(DATA) $(if $(PART),--part $(PART))
else ifneq ($(FOLDER),)
$(TRAIN_INDEX): $(LABELS) | $(STAMP)
	$(LIID) data folder --images $(FOLDER) --labels $(LABELS) --out $(DATA) $(if $(PART),--part $(PART))
else
$(TRAIN_INDEX): src/liid_cli/data/demo.py | $(STAMP)
	$(LIID) data demo --out $(DATA) --n-train $(DEMO_TRAIN)
endif

# ---- LIID: pseudo labels from image-level labels ----
$(RUN)/proposals/$(M): $(TRAIN_INDEX) stages/proposals.yaml $(SRC)
	$(LIID) proposals --data $(TRAIN_INDEX) $(ARGS) --workers $(WORKERS)
$(RUN)/cam/$(M): $(RUN)/proposals/$(M) stages/train_cam.yaml
	$(LIID) train-cam $(ARGS)
$(RUN)/mil/$(M): $(RUN)/cam/$(M) stages/train_mil.yaml
	$(LIID) train-mil $(ARGS)
$(RUN)/dump/$(M): $(RUN)/mil/$(M) stages/dump.yaml
	$(LIID) dump $(ARGS)
$(RUN)/cut/$(M): $(RUN)/dump/$(M) stages/cut.yaml
	$(LIID) cut $(ARGS)
$(RUN)/export/$(M): $(RUN)/cut/$(M) stages/export_coco.yaml
	$(LIID) export-coco $(ARGS)
# The eval targets are stamps, not metrics.json: a data set without ground truth writes no metrics.
$(RUN)/eval/.pseudo_labels.done: $(RUN)/export/$(M)
	$(LIID) eval instances --run $(RUN) --if-truth
	$(LIID) eval labels --run $(RUN) --if-truth
	$(LIID) eval proposals --run $(RUN) --if-truth -q
	@mkdir -p $(@D) && touch $@

# ---- Mask R-CNN on the pseudo labels, evaluated on val ----
$(RUN)/train/$(M): $(RUN)/export/$(M) stages/train.yaml
	$(LIID) train $(ARGS)
$(RUN)/predict/$(M): $(RUN)/train/$(M) stages/predict.yaml
	$(LIID) predict $(ARGS) --data $(VAL_INDEX)
$(RUN)/eval/.predictions.done: $(RUN)/predict/$(M)
	$(LIID) eval instances --run $(RUN) --source predictions --if-truth
	@mkdir -p $(@D) && touch $@

pipeline: $(RUN)/eval/.pseudo_labels.done $(RUN)/eval/.predictions.done  ## LIID + Mask R-CNN.

# ---- upper bound: the same Mask R-CNN on ground-truth masks ----
$(GT_RUN)/train/$(M): $(TRAIN_INDEX) stages/train.yaml $(SRC)
	$(LIID) train $(GT_ARGS) --data $(TRAIN_INDEX) --labels $(DATA)/gt_train.json
$(GT_RUN)/predict/$(M): $(GT_RUN)/train/$(M) stages/predict.yaml
	$(LIID) predict $(GT_ARGS) --data $(VAL_INDEX)
$(GT_RUN)/eval/predictions/metrics.json: $(GT_RUN)/predict/$(M)
	$(LIID) eval instances --run $(GT_RUN) --source predictions

upper-bound: $(GT_RUN)/eval/predictions/metrics.json  ## Mask R-CNN trained on ground truth.

report: pipeline upper-bound  ## runs/demo/report.html and the weak/full table.
	$(LIID) viz $(ARGS)
	$(LIID) eval compare $(RUN) $(GT_RUN)

ablation: pipeline  ## The paper's Table 8 on the demo (pseudo labels, train split); printed and in the report.
	$(LIID) ablation $(ARGS) --out $(RUN)-ablation
	$(LIID) viz $(ARGS)

# ---- baselines: what people try first, evaluated beside LIID (the run's ground truth) ----
BASELINES := cam_threshold best_proposal no_graph
$(RUN)/baselines/$(M): $(RUN)/export/$(M) stages/baselines.yaml
	$(LIID) baselines $(ARGS)
baselines: $(RUN)/eval/.pseudo_labels.done $(RUN)/baselines/$(M)  ## CAM threshold, best proposal and no-graph pseudo labels beside LIID.
	$(foreach b,$(BASELINES),$(LIID) eval instances --run $(RUN) --predictions $(RUN)/baselines/$(b)/pseudo_instances.json --name baseline_$(b) --if-truth -q;)
	$(LIID) eval compare $(RUN) --if-truth

# ---- your own photos: make real COCO=instances.json IMAGES=dir RUN=runs/real (or FOLDER=dir LABELS=labels.csv) ----
# PART=i/n keeps part i of n of the photos (liid data --part; one RUN per part), e.g. the two fixed
# halves of a set: choose settings with PART=0/2, report PART=1/2 (or VAL_PART=1/2 in real-train).
# REAL_PROFILE: the stage YAMLs' profile for your photos (the tests use the fast demo one).
REAL_PROFILE ?= real
REAL_ARGS = DATA=$(RUN)/data RUN=$(RUN) PROFILE=$(REAL_PROFILE)
real:  ## LIID + baselines + evaluations + report on your photos (COCO= IMAGES= or FOLDER= LABELS=; RUN=).
	@test -n "$(COCO)$(FOLDER)" || { echo "error: pass COCO=instances.json IMAGES=DIR or FOLDER=DIR LABELS=labels.csv"; exit 2; }
	$(MAKE) baselines $(REAL_ARGS)
	$(LIID) viz --run $(RUN) --profile $(REAL_PROFILE)

# Mask R-CNN on the pseudo labels; it predicts the training photos. With VAL_COCO= VAL_IMAGES= (or a
# folder without ground truth, VAL_FOLDER=) it is also run on those photos it never saw, beside the
# same Mask R-CNN trained on the ground truth (COCO only) and on the labels of the baseline
# VAL_BASELINE: <RUN>/val/<model>/predictions.json, scored when they have ground truth.
VAL_BASELINE ?= no_graph
VAL_DATA = $(RUN)/val/data
VAL_SET = $(if $(VAL_COCO),--data $(VAL_DATA)/index_val.json,--images $(VAL_FOLDER))
VAL_TRAIN = $(LIID) train --profile $(REAL_PROFILE) --seed $(SEED) --data $(RUN)/data/index_train.json
VAL_MODELS = liid $(if $(COCO),ground-truth) $(VAL_BASELINE)
real-train:  ## Mask R-CNN on the pseudo labels of `make real` (same variables; VAL_COCO= VAL_IMAGES= or VAL_FOLDER= to score it on other photos).
	@test -n "$(COCO)$(FOLDER)" || { echo "error: pass COCO=instances.json IMAGES=DIR or FOLDER=DIR LABELS=labels.csv"; exit 2; }
	$(MAKE) $(RUN)/train/$(M) $(if $(VAL_COCO)$(VAL_FOLDER),$(RUN)/baselines/$(M)) $(REAL_ARGS)
	$(LIID) predict --run $(RUN) --profile $(REAL_PROFILE) --data $(RUN)/data/index_train.json
	$(LIID) eval instances --run $(RUN) --source predictions --if-truth
ifneq ($(VAL_COCO)$(VAL_FOLDER),)
	$(if $(VAL_COCO),$(LIID) data coco --annotations $(VAL_COCO) --images $(VAL_IMAGES) --split val --out $(VAL_DATA) $(if $(VAL_PART),--part $(VAL_PART)))
	$(if $(COCO),$(VAL_TRAIN) --run $(RUN)/val/ground-truth --labels $(RUN)/data/gt_train.json)
	$(VAL_TRAIN) --run $(RUN)/val/$(VAL_BASELINE) --labels $(RUN)/baselines/$(VAL_BASELINE)/pseudo_instances.json
	$(foreach m,$(VAL_MODELS),$(LIID) predict --run $(RUN)/val/$(m) --profile $(REAL_PROFILE) $(VAL_SET) \
	  --model $(if $(filter liid,$(m)),$(RUN),$(RUN)/val/$(m))/train/model_best.pt && \
	  ln -sfn predict/predictions.json $(RUN)/val/$(m)/predictions.json && \
	  $(LIID) eval instances --run $(RUN)/val/$(m) --source predictions --if-truth &&) true
	$(LIID) eval compare $(foreach m,$(VAL_MODELS),$(RUN)/val/$(m)) --if-truth
endif
	$(LIID) viz --run $(RUN) --profile $(REAL_PROFILE)

# ---- what more tagged photos buy: make learning-curve COCO=... IMAGES=... RUN=runs/curve ----
# `make real` on nested parts of the set (CURVE_PARTS; part 0/4 lies inside 0/2, which lies inside
# 0/1, the whole set), one run folder per part, <RUN>-<i>of<n>, and their pseudo labels side by
# side. With VAL_COCO= VAL_IMAGES= VAL_PART= (parts drawn from the other photos, e.g.
# CURVE_PARTS="0/8 0/4 0/2" VAL_PART=1/2) each part also gets `make real-train`.
CURVE_PARTS ?= 0/4 0/2 0/1
curve_run = $(RUN)-$(subst /,of,$(1))
curve_runs = $(foreach p,$(CURVE_PARTS),$(call curve_run,$(p)))
learning-curve:  ## Pseudo labels (and with VAL_COCO=, Mask R-CNN) against the number of tagged photos.
	@test -n "$(COCO)$(FOLDER)" || { echo "error: pass COCO=instances.json IMAGES=DIR or FOLDER=DIR LABELS=labels.csv"; exit 2; }
	$(foreach p,$(CURVE_PARTS),$(MAKE) real $(if $(VAL_COCO)$(VAL_FOLDER),real-train) PART=$(p) RUN=$(call curve_run,$(p)) &&) true
	$(LIID) eval compare $(curve_runs) --if-truth
	$(if $(VAL_COCO),$(LIID) eval compare $(addsuffix /val/liid,$(curve_runs)) --if-truth)

# ---- the demo generator's learning curve: make demo-curve (runs/demo-curve-<n>, n training images) ----
DEMO_CURVE ?= 300 1000 3000
demo_curve_runs = $(foreach n,$(DEMO_CURVE),$(RUN)-curve-$(n))
demo-curve:  ## LIID's pseudo labels (and baselines) on the demo generator at DEMO_CURVE training images.
	$(foreach n,$(DEMO_CURVE),$(MAKE) baselines DATA=$(RUN)-curve-$(n)/data RUN=$(RUN)-curve-$(n) DEMO_TRAIN=$(n) &&) true
	$(LIID) eval compare $(demo_curve_runs) --if-truth

# ---- the second method: learned box-to-mask, source classes' masks -> target classes' boxes ----
B2M_RUN ?= runs/demo-box2mask
B2M_ARGS := --data $(TRAIN_INDEX) --profile $(PROFILE)
$(B2M_RUN)/box2mask_model/$(M): $(TRAIN_INDEX) stages/train_box2mask.yaml $(SRC)
	$(LIID) train-box2mask $(B2M_ARGS) --run $(B2M_RUN)
$(B2M_RUN)/box2mask/$(M): $(B2M_RUN)/box2mask_model/$(M) stages/box2mask.yaml
	$(LIID) box2mask $(B2M_ARGS) --run $(B2M_RUN)
$(B2M_RUN)-%/box2mask/$(M): $(B2M_RUN)/box2mask_model/$(M) stages/box2mask.yaml
	$(LIID) box2mask $(B2M_ARGS) --run $(B2M_RUN)-$* --baseline $* --targets-of $(B2M_RUN)/box2mask_model/box2mask.pt

box2mask: $(B2M_RUN)/box2mask/$(M) $(B2M_RUN)-rect/box2mask/$(M) $(B2M_RUN)-ellipse/box2mask/$(M)  ## Learned box-to-mask vs the rect and ellipse baselines on the demo's target classes.

# ---- the second method on real photos: make box2mask-real COCO=instances.json IMAGES=dir RUN=runs/b2m-real ----
# learned: trained on the masks of the classes outside PASCAL VOC (stages/train_box2mask.yaml), it
# labels the boxes of the classes it never saw; the baselines and the fully supervised reference
# (`full`: the same network and schedule trained on every class's masks) label the same boxes.
B2M_METHODS := learned learned-r2 rect ellipse grabcut full
B2M_REAL = --data $(RUN)/data/index_train.json --profile real --seed $(SEED)
B2M_WEAK = $(RUN)/learned/box2mask_model/box2mask.pt
box2mask-real:  ## The second method on real photos vs rect/ellipse/GrabCut and full supervision (COCO= IMAGES= RUN=).
	@test -n "$(COCO)" || { echo "error: pass COCO=instances.json IMAGES=DIR (boxes and masks; RUN=runs/b2m-real)"; exit 2; }
	$(MAKE) $(RUN)/data/index_train.json DATA=$(RUN)/data
	$(LIID) train-box2mask $(B2M_REAL) --run $(RUN)/learned
	$(LIID) box2mask $(B2M_REAL) --run $(RUN)/learned
	$(LIID) box2mask $(B2M_REAL) --run $(RUN)/learned-r2 --model $(B2M_WEAK) --rounds 2
	$(foreach b,rect ellipse grabcut,$(LIID) box2mask $(B2M_REAL) --run $(RUN)/$(b) --baseline $(b) --targets-of $(B2M_WEAK) &&) true
	$(LIID) train-box2mask $(B2M_REAL) --run $(RUN)/full --set source_classes=all
	$(LIID) box2mask $(B2M_REAL) --run $(RUN)/full --targets-of $(B2M_WEAK) --allow-seen-classes
	$(foreach m,$(B2M_METHODS),ln -sfn box2mask/pseudo_instances.json $(RUN)/$(m)/pseudo_instances.json &&) true
	$(LIID) eval box2mask $(RUN)
	$(LIID) viz --run $(RUN) --profile real

# ---- results docs: docs/results/<name>.md, written from run folders, never typed by hand ----
# $(call results_doc,NAME,RUN FOLDERS,HOW[,FLAGS]): `liid eval compare RUN... --markdown docs/results/NAME.md [FLAGS]`
# when every run folder has evaluations (<run>/eval/*/metrics.json); otherwise the table is left as
# it is (or not written) and a note names the missing folders and HOW to make them.
# docs/results.md lists the tables.
RESULTS_DIR := docs/results
COCO_DEV := ../shared/data/coco-dev
# Each half at seeds 0-2 with the committed `real` profile, then with what it replaced, in order:
# train-cam and train-mil on EfficientNet-Lite0 (export scored p_crop_cam_agreement), the export
# scored crop_cam_agreement, and train-cam without prior_bias (seeds 0-1).
halves = $(foreach h,halfA halfB,runs/$(h)$(1) runs/$(h)$(1)-s1 runs/$(h)$(1)-s2)
HALVES := $(call halves,-lite2)
HALVES_LITE0 := $(call halves,-pcc)
HALVES_CROP_SCORE := $(call halves,)
HALVES_NO_PRIOR_BIAS := $(foreach h,halfA halfB,runs/$(h)-nobias runs/$(h)-nobias-s1)
# Tried on 2026-12-08 (docs/real-photos.md): train-cam at 6 epochs on half A and copies of it from
# cut or export-coco on; half B seed 0 rerun with the committed profile, and its copies.
HALF_CAM6 := halfA-cam6 $(addprefix halfA-cam6-,w0 w03 w07 k10 d20 mpc1 mpc3) halfA-top100-div05 halfB-rerun halfB-rerun-w0 halfB-rerun-w03
HALF_VARIANTS := halfA-ss1 halfB-ss1 halfB-s1-ss1 halfA-pscore halfB-pscore halfB-s1-pscore halfA-top100 halfA-nomutual halfB-nomutual halfA-mpc1 halfB-mpc1 halfA-mpc3 halfA-nomutual-d10 halfA-nomutual-k5
results_doc = @missing="$(strip $(foreach r,$(2),$(if $(wildcard $(r)/eval/*/metrics.json),,$(r))))"; \
	if [ -n "$$missing" ]; then echo "results: skipped $(RESULTS_DIR)/$(1).md, no evaluations in $$missing ($(3))"; \
	else $(LIID) eval compare $(2) --markdown $(RESULTS_DIR)/$(1).md $(4); fi
results:  ## Rewrite docs/results/*.md from the run folders there are (a table whose runs are missing is left as it is).
	$(call results_doc,demo,runs/demo runs/demo-gt,make all)
	$(call results_doc,demo-seed1,runs/demo-s1 runs/demo-gt-s1,make all SEED=1 RUN=runs/demo-s1 GT_RUN=runs/demo-gt-s1)
	$(call results_doc,real,runs/real,make real COCO=$(COCO_DEV)/instances.json IMAGES=$(COCO_DEV)/images RUN=runs/real)
	$(call results_doc,real-halves,$(HALVES),docs/real-photos.md)
	$(call results_doc,real-halves-seeds,$(HALVES) $(HALVES_LITE0) $(HALVES_CROP_SCORE) $(HALVES_NO_PRIOR_BIAS),docs/real-photos.md,--seeds)
	$(call results_doc,real-halves-top100,runs/halfA runs/halfA-bias-top100,docs/real-photos.md)
	$(call results_doc,real-halves-variants,$(addprefix runs/,$(HALF_VARIANTS)),docs/real-photos.md)
	$(call results_doc,real-halves-cam6,$(addprefix runs/,$(HALF_CAM6)),docs/real-photos.md)
	$(call results_doc,real-halves-val,runs/halfA-nobias $(addprefix runs/halfA-nobias/val/,liid ground-truth no_graph ground-truth-fit ground-truth-anchors16 ground-truth-anchors16-fit),make real-train ... PART=0/2 RUN=runs/halfA-nobias VAL_COCO=... VAL_PART=1/2 with train-cam's prior_bias off)
	$(call results_doc,real-learning-curve,runs/curve-0of4 runs/curve-0of2 runs/curve-0of1,make learning-curve COCO=... IMAGES=... RUN=runs/curve)
	$(call results_doc,box2mask-real,runs/b2m-real,make box2mask-real COCO=$(COCO_DEV)/instances.json IMAGES=$(COCO_DEV)/images RUN=runs/b2m-real)

clean:  ## Remove runs/ and the generated demo data (keeps .venv).
	rm -rf runs $(DATA)
