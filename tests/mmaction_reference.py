"""The authors' accuracy functions, transcribed line for line for the tests to compare against.

Source: `mmaction/core/evaluation/accuracy.py` of the VST fork (SwinTransformer/Video-Swin-Transformer),
identical in open-mmlab/mmaction2 0.x (read at open-mmlab/mmaction2@01436f0), Apache-2.0. Only the input
checks and the unused `normalize` option are left out; the arithmetic is theirs, in their order.
"""

import numpy as np


def confusion_matrix(y_pred, y_real):
    y_pred, y_real = np.asarray(y_pred, dtype=np.int64), np.asarray(y_real, dtype=np.int64)
    label_set = np.unique(np.concatenate((y_pred, y_real)))
    num_labels = len(label_set)
    max_label = label_set[-1]
    label_map = np.zeros(max_label + 1, dtype=np.int64)
    for i, label in enumerate(label_set):
        label_map[label] = i
    y_pred_mapped = label_map[y_pred]
    y_real_mapped = label_map[y_real]
    return np.bincount(num_labels * y_real_mapped + y_pred_mapped,
                       minlength=num_labels**2).reshape(num_labels, num_labels)


def mean_class_accuracy(scores, labels):
    pred = np.argmax(scores, axis=1)
    cf_mat = confusion_matrix(pred, labels).astype(float)
    cls_cnt = cf_mat.sum(axis=1)
    cls_hit = np.diag(cf_mat)
    return np.mean([hit / cnt if cnt else 0.0 for cnt, hit in zip(cls_cnt, cls_hit)])


def top_k_accuracy(scores, labels, topk=(1,)):
    res = []
    labels = np.array(labels)[:, np.newaxis]
    for k in topk:
        max_k_preds = np.argsort(scores, axis=1)[:, -k:][:, ::-1]
        match_array = np.logical_or.reduce(max_k_preds == labels, axis=1)
        res.append(match_array.sum() / match_array.shape[0])
    return res
