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

.PHONY: all test help env pipeline upper-bound report ablation baselines real real-train box2mask box2mask-real clean

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
	$(LIID) data coco --annotations $(COCO) --images $(IMAGES) --out $(DATA)
else ifneq ($(FOLDER),)
$(TRAIN_INDEX): $(LABELS) | $(STAMP)
	$(LIID) data folder --images $(FOLDER) --labels $(LABELS) --out $(DATA)
else
$(TRAIN_INDEX): src/liid_cli/data/demo.py | $(STAMP)
	$(LIID) data demo --out $(DATA)
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
$(RUN)/eval/pseudo_labels/metrics.json: $(RUN)/export/$(M)
	$(LIID) eval instances --run $(RUN) --if-truth
	$(LIID) eval labels --run $(RUN) --if-truth
	@mkdir -p $(@D) && touch $@  # a data set without ground truth has no metrics to write

# ---- Mask R-CNN on the pseudo labels, evaluated on val ----
$(RUN)/train/$(M): $(RUN)/export/$(M) stages/train.yaml
	$(LIID) train $(ARGS)
$(RUN)/predict/$(M): $(RUN)/train/$(M) stages/predict.yaml
	$(LIID) predict $(ARGS) --data $(VAL_INDEX)
$(RUN)/eval/predictions/metrics.json: $(RUN)/predict/$(M)
	$(LIID) eval instances --run $(RUN) --source predictions --if-truth
	@mkdir -p $(@D) && touch $@

pipeline: $(RUN)/eval/pseudo_labels/metrics.json $(RUN)/eval/predictions/metrics.json  ## LIID + Mask R-CNN.

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
baselines: $(RUN)/eval/pseudo_labels/metrics.json  ## CAM threshold, best proposal and no-graph pseudo labels beside LIID.
	$(LIID) baselines $(ARGS)
	$(foreach b,$(BASELINES),$(LIID) eval instances --run $(RUN) --predictions $(RUN)/baselines/$(b)/pseudo_instances.json --name baseline_$(b) --if-truth -q;)
	-$(LIID) eval compare $(RUN)

# ---- your own photos: make real COCO=instances.json IMAGES=dir RUN=runs/real (or FOLDER=dir LABELS=labels.csv) ----
REAL_ARGS = DATA=$(RUN)/data RUN=$(RUN) PROFILE=real
real:  ## LIID + baselines + evaluations + report on your photos (COCO= IMAGES= or FOLDER= LABELS=; RUN=).
	@test -n "$(COCO)$(FOLDER)" || { echo "error: pass COCO=instances.json IMAGES=DIR or FOLDER=DIR LABELS=labels.csv"; exit 2; }
	$(MAKE) baselines $(REAL_ARGS)
	$(LIID) viz --run $(RUN) --profile real

real-train:  ## Mask R-CNN on the pseudo labels of `make real` (same variables), its predictions and scores.
	@test -n "$(COCO)$(FOLDER)" || { echo "error: pass COCO=instances.json IMAGES=DIR or FOLDER=DIR LABELS=labels.csv"; exit 2; }
	$(MAKE) $(RUN)/train/$(M) $(REAL_ARGS)
	$(LIID) predict --run $(RUN) --profile real --data $(RUN)/data/index_train.json
	$(LIID) eval instances --run $(RUN) --source predictions --if-truth

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

clean:  ## Remove runs/ and the generated demo data (keeps .venv).
	rm -rf runs $(DATA)
