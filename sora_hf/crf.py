"""A linear-chain CRF for Sora's token-classification head (`config.use_crf`), with the transitions each tag scheme
(BIO, BIOES, BMES) allows. Its own file, imported by `modeling_sora.py` and copied beside it by `save_pretrained`, so
that it travels to the Hub as remote code too; it imports only torch and the config."""

import torch
from torch import nn

from .configuration_sora import SoraConfig

_SPAN_POSITIONS = ("B", "I", "M", "E", "S")
_FORBIDDEN = -1e4  # added to the score of a transition the tag scheme rules out (finite: no NaN in logsumexp)


def _span_tag(label: str) -> tuple[str, str]:
    position, dash, kind = label.partition("-")
    if dash and position in _SPAN_POSITIONS:
        return position, kind
    return (label, "") if label in _SPAN_POSITIONS else ("O", "")


def allowed_transitions(labels: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Which tag may follow which, start and end a sentence, in the scheme of `labels` (BIO; BIOES or BMES when a
    label has an E, S or M position; typed `B-ORG` or bare `B`). Labels in no scheme allow everything."""
    tags = [_span_tag(label) for label in labels]
    n = len(tags)
    if all(position == "O" for position, _ in tags):
        return torch.ones(n, n, dtype=torch.bool), torch.ones(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)
    closes = any(position in ("E", "S", "M") for position, _ in tags)

    def follows(previous: tuple[str, str], current: tuple[str, str]) -> bool:
        (p, p_kind), (c, c_kind) = previous, current
        if closes:  # BIOES / BMES: I, M and E continue an open span of their type; B, S and O need none open
            if c in ("I", "M", "E"):
                return p in ("B", "I", "M") and p_kind == c_kind
            return p not in ("B", "I", "M")
        return c != "I" or (p in ("B", "I") and p_kind == c_kind)  # BIO

    allowed = torch.tensor([[follows(a, b) for b in tags] for a in tags], dtype=torch.bool)
    start = torch.tensor([c not in ("I", "M", "E") for c, _ in tags], dtype=torch.bool)
    end = torch.tensor([(c not in ("B", "I", "M")) if closes else True for c, _ in tags], dtype=torch.bool)
    return allowed, start, end


def _left_align(mask: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """The positions of `mask` moved to the front of each row (in order): (new mask, the tensors gathered, order)."""
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
    lengths = mask.sum(1)
    aligned = torch.arange(mask.shape[1], device=mask.device)[None, :] < lengths[:, None]
    gathered = []
    for tensor in tensors:
        index = order.view(*order.shape, *([1] * (tensor.dim() - 2))).expand(*order.shape, *tensor.shape[2:])
        gathered.append(tensor.gather(1, index))
    return aligned, gathered, order


class SoraCRF(nn.Module):
    """A linear-chain CRF over the tags of a token-classification head (Lafferty et al. 2001; Lample et al. 2016).

    Scores a tag sequence as its emissions plus learned start, transition and end scores; transitions the tag scheme
    rules out (`allowed_transitions` of `config.id2label`, e.g. O -> I-PER) score -1e4, in training and in decoding.
    Every method takes a `mask` of the positions that carry tags (the first sub-token of each word); the others are
    skipped, as if the sentence were those positions alone.
    """

    def __init__(self, config: SoraConfig):
        super().__init__()
        n = config.num_labels
        self.transitions = nn.Parameter(torch.zeros(n, n))  # [from, to]
        self.start_transitions = nn.Parameter(torch.zeros(n))
        self.end_transitions = nn.Parameter(torch.zeros(n))
        self.labels = [config.id2label.get(i, str(i)) for i in range(n)]
        transition, start, end = self.scheme_penalties()
        # not saved: they follow from the labels (and `_init_weights` sets them again after a meta-device load)
        self.register_buffer("transition_penalty", transition, persistent=False)
        self.register_buffer("start_penalty", start, persistent=False)
        self.register_buffer("end_penalty", end, persistent=False)

    def scheme_penalties(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-1e4 on each transition, start and end the labels' tag scheme rules out, 0 elsewhere."""
        return tuple((~allowed).float() * _FORBIDDEN for allowed in allowed_transitions(self.labels))

    def _scores(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (
            self.start_transitions.float() + self.start_penalty,
            self.transitions.float() + self.transition_penalty,
            self.end_transitions.float() + self.end_penalty,
        )

    def _alphas(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        start, transitions, _ = self._scores()
        alpha = start + emissions[:, 0]
        alphas = [alpha]
        for t in range(1, emissions.shape[1]):
            step = torch.logsumexp(alpha[:, :, None] + transitions[None] + emissions[:, t, None, :], dim=1)
            alpha = torch.where(mask[:, t, None], step, alpha)
            alphas.append(alpha)
        return alphas

    def neg_log_likelihood(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """-log p(tags | emissions) summed over the sentences, per tagged token: a loss on the scale of the softmax
        head's cross-entropy, comparable between batches of long and short sentences and across epochs (a mean per
        sentence grows with sentence length and, logged, looked flat while F1 rose)."""
        mask, (emissions, tags), _ = _left_align(mask, emissions.float(), tags)
        lengths = mask.sum(1)
        tags = tags.clamp(min=0)
        start, transitions, end = self._scores()
        batch = torch.arange(tags.shape[0], device=tags.device)
        score = start[tags[:, 0]] + emissions[batch, 0, tags[:, 0]]
        for t in range(1, tags.shape[1]):
            step = transitions[tags[:, t - 1], tags[:, t]] + emissions[batch, t, tags[:, t]]
            score = score + step * mask[:, t]
        last = tags.gather(1, (lengths - 1).clamp(min=0)[:, None]).squeeze(1)
        score = score + end[last]
        log_partition = torch.logsumexp(self._alphas(emissions, mask)[-1] + end, dim=1)
        present = lengths > 0
        return ((log_partition - score) * present).sum() / lengths.sum().clamp(min=1)

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.LongTensor:
        """The best tag sequence (Viterbi) at the `mask` positions; -100 elsewhere."""
        aligned, (scores_in,), order = _left_align(mask, emissions.float())
        start, transitions, end = self._scores()
        n = scores_in.shape[-1]
        score = start + scores_in[:, 0]
        keep = torch.arange(n, device=score.device).expand_as(score)
        history = []
        for t in range(1, scores_in.shape[1]):
            best, index = (score[:, :, None] + transitions[None]).max(dim=1)
            score = torch.where(aligned[:, t, None], best + scores_in[:, t], score)
            history.append(torch.where(aligned[:, t, None], index, keep))
        last = (score + end).argmax(dim=-1)
        path = [last]
        for index in reversed(history):
            last = index.gather(1, last[:, None]).squeeze(1)
            path.append(last)
        path = torch.stack(path[::-1], dim=1).masked_fill(~aligned, -100)
        return torch.full_like(path, -100).scatter(1, order, path)

    @torch.no_grad()
    def log_marginals(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log p(tag at t | emissions) for every tag at the `mask` positions (forward-backward); the emissions'
        log-softmax elsewhere."""
        aligned, (scores_in,), order = _left_align(mask, emissions.float())
        _, transitions, end = self._scores()
        alphas = self._alphas(scores_in, aligned)
        beta = end.expand_as(alphas[-1])
        betas = [beta]
        for t in range(scores_in.shape[1] - 1, 0, -1):
            step = torch.logsumexp(transitions[None] + (scores_in[:, t] + beta)[:, None, :], dim=2)
            beta = torch.where(aligned[:, t, None], step, beta)
            betas.append(beta)
        betas = betas[::-1]
        log_z = torch.logsumexp(alphas[-1] + end, dim=1)
        marginals = torch.stack([a + b for a, b in zip(alphas, betas, strict=True)], dim=1) - log_z[:, None, None]
        result = torch.log_softmax(emissions.float(), dim=-1).clone()
        index = order[..., None].expand_as(marginals)
        placed = torch.zeros_like(result).scatter(1, index, marginals)
        return torch.where(mask[..., None], placed, result)
